"""A replay's verdict as a SLSA Verification Summary Attestation v1, and its checks.

``rtgov replay`` signs an in-toto Statement whose predicate is a VSA
(https://slsa.dev/spec/v1.0/verification_summary):

- subject: the replayed run's record (``run/<id>``, the sha256 its verdict leaf pins);
- ``verifier.id``: pytest-rtgov's replay, with its version;
- ``policy``: the tolerance rules in force (the ``[[replay]]`` tables of gates.toml), by
  the sha256 of their canonical JSON;
- ``inputAttestations``: the original ``verdict`` leaf, by the sha256 of its bytes, with
  ``uri`` naming its ledger index; the file ``rtgov replay`` writes carries that leaf's
  inclusion proof beside the envelope (:data:`BUNDLE_FORMAT`), so ``rtgov verify-proof``
  checks the signature, the proof against a signed checkpoint, and that the two agree;
- ``verificationResult``: ``PASSED`` when the outputs were identical or within
  tolerance, else ``FAILED``; ``verifiedLevels``: the outcome as
  ``RTGOV_REPLAY_<OUTCOME>``.

>>> leaf = b'{"kind":"verdict","record_sha256":"sha256:' + b"a" * 64 + b'","run_id":"r1"}'
>>> body = replay_statement(run_id="r1", verdict_leaf=leaf, leaf_index=7,
...     policy_sha256="b" * 64, outcome="identical", time_verified="2026-11-30T00:00:00Z",
...     version="1.0")
>>> import json; check_replay_statement(json.loads(body), leaf)
[]
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Final

from pytest_rtgov.core.dsse import statement

__all__ = [
    "BUNDLE_FORMAT",
    "PASSING",
    "VERIFIER_ID",
    "VSA_V1",
    "check_replay_statement",
    "replay_statement",
]

VSA_V1: Final = "https://slsa.dev/verification_summary/v1"
VERIFIER_ID: Final = "https://pytest-rtgov.dev/verifier/replay"
BUNDLE_FORMAT: Final = "rtgov.replay-attestation/1"
PASSING: Final = ("identical", "within_tolerance")


def _level(outcome: str) -> str:
    return "RTGOV_REPLAY_" + outcome.upper()


def replay_statement(
    *,
    run_id: str,
    verdict_leaf: bytes,
    leaf_index: int,
    policy_sha256: str,
    outcome: str,
    time_verified: str,
    version: str,
) -> bytes:
    """Canonical JSON of the in-toto Statement (see the module's docstring)."""
    leaf = json.loads(verdict_leaf)
    record_hex = str(leaf["record_sha256"]).removeprefix("sha256:")
    predicate = {
        "verifier": {"id": VERIFIER_ID, "version": {"pytest-rtgov": version}},
        "timeVerified": time_verified,
        "resourceUri": f"rtgov:run/{run_id}",
        "policy": {"uri": "gates.toml#replay", "digest": {"sha256": policy_sha256}},
        "inputAttestations": [
            {
                "uri": f"rtgov:ledger/leaf/{leaf_index}",
                "digest": {"sha256": hashlib.sha256(verdict_leaf).hexdigest()},
            }
        ],
        "verificationResult": "PASSED" if outcome in PASSING else "FAILED",
        "verifiedLevels": [_level(outcome)],
        "slsaVersion": "1.0",
    }
    return statement({f"run/{run_id}": record_hex}, predicate_type=VSA_V1, predicate=predicate)


def check_replay_statement(document: Mapping[str, Any], verdict_leaf: bytes) -> list[str]:
    """What is wrong with a replay VSA given the verdict leaf its proof proves (empty:
    nothing): the predicate type, the subject against the leaf's record digest, the input
    attestation against the leaf's bytes, and a result that agrees with the level."""
    problems: list[str] = []
    if document.get("predicateType") != VSA_V1:
        return [f"predicateType is {document.get('predicateType')!r}, expected {VSA_V1}"]
    predicate = document.get("predicate")
    subjects = document.get("subject")
    if not isinstance(predicate, Mapping) or not isinstance(subjects, list) or not subjects:
        return ["not a verification summary: no predicate or no subject"]
    try:
        leaf = json.loads(verdict_leaf)
    except ValueError:
        return ["the proved leaf is not JSON"]
    if not isinstance(leaf, dict) or leaf.get("kind") != "verdict":
        return ["the proved leaf is not a verdict leaf"]
    want = f"run/{leaf.get('run_id')}"
    subject = subjects[0] if isinstance(subjects[0], Mapping) else {}
    digest = subject.get("digest", {})
    if subject.get("name") != want:
        problems.append(f"subject is {subject.get('name')!r}, the proved leaf is of {want!r}")
    elif f"sha256:{digest.get('sha256')}" != leaf.get("record_sha256"):
        problems.append("the subject's digest is not the record digest the verdict leaf pins")
    inputs = predicate.get("inputAttestations")
    leaf_hex = hashlib.sha256(verdict_leaf).hexdigest()
    if not (
        isinstance(inputs, list)
        and inputs
        and isinstance(inputs[0], Mapping)
        and inputs[0].get("digest", {}).get("sha256") == leaf_hex
    ):
        problems.append("inputAttestations[0] does not name the proved verdict leaf's digest")
    levels = predicate.get("verifiedLevels")
    result = predicate.get("verificationResult")
    if not isinstance(levels, list) or len(levels) != 1 or not isinstance(levels[0], str):
        problems.append("verifiedLevels is not one RTGOV_REPLAY_<OUTCOME> level")
    else:
        passed = levels[0] in {_level(o) for o in PASSING}
        if result != ("PASSED" if passed else "FAILED"):
            problems.append(f"verificationResult {result!r} disagrees with {levels[0]}")
    if predicate.get("verifier", {}).get("id") != VERIFIER_ID:
        problems.append(f"verifier.id is not {VERIFIER_ID}")
    return problems
