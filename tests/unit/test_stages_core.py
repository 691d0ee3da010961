"""The pure core of the stage cache (``core/stages.py``): the key, the SLSA provenance that
seals an entry and its round trip, the chain check, JSON-only params and the session's
exit status."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_rtgov.core import dsse
from pytest_rtgov.core.keys import generate_signer
from pytest_rtgov.core.stages import (
    BUILD_TYPE,
    BUILDER_ID,
    SLSA_PROVENANCE_V1,
    KeyInputs,
    StageDefinitionError,
    StageEntryError,
    Upstream,
    chain_problem,
    check_json_value,
    parse_sealed_stage,
    provenance_statement,
    session_problems,
)

HEX = "0123456789abcdef"
digests = st.text(HEX, min_size=64, max_size=64)
names = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_.-]{0,12}\Z")
# Plain JSON as a user writes params: finite floats, str keys, strings UTF-8 can encode.
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=8)
finite = st.floats(allow_nan=False, allow_infinity=False)
scalars = st.none() | st.booleans() | st.integers() | finite
json_values = st.recursive(
    scalars | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
json_objects = st.dictionaries(texts, json_values, max_size=4)
code_maps = st.dictionaries(st.from_regex(r"\A[a-z]{1,6}\.py::[a-z_]{1,6}\Z"), digests, max_size=4)
environments = st.dictionaries(names, texts, max_size=4)
output_maps = st.dictionaries(names, digests, min_size=1, max_size=3)


@st.composite
def upstreams(draw: Any) -> tuple[Upstream, ...]:
    stages = draw(st.lists(names, max_size=3, unique=True))
    return tuple(Upstream(s, draw(digests), draw(output_maps)) for s in stages)


key_inputs = st.builds(
    KeyInputs,
    stage=names,
    code=code_maps,
    params=json_objects,
    seeds=st.dictionaries(texts, st.integers(), max_size=3),
    environment=environments,
    upstream=upstreams(),
)

BASE = KeyInputs(
    stage="pretrain",
    code={"helpers.py::scale": "a" * 64, "conftest.py::pretrain": "b" * 64},
    params={"epochs": 8, "lr": 0.001},
    seeds={"init": 7},
    environment={"numpy": "2.1.0", "backend": "numpy", "env.OMP_NUM_THREADS": "1"},
    upstream=(Upstream("prepare", "c" * 64, {"x": "d" * 64, "y": "e" * 64}),),
)


def seal(inputs: KeyInputs, outputs: dict[str, str], **extra: Any) -> dict[str, Any]:
    """The statement of an entry, as ``StageCache.store`` signs it, read back as JSON."""
    fields: dict[str, Any] = {
        "metadata": {},
        "metrics": (),
        "device": "numpy",
        "invocation": "run-1/controller",
        "started_on": "2026-01-01T00:00:00Z",
        "finished_on": "2026-01-01T00:00:01Z",
        "builder_version": "1.0",
    }
    fields.update(extra)
    subjects, predicate = provenance_statement(inputs, key=inputs.key(), outputs=outputs, **fields)
    payload = dsse.statement(subjects, predicate_type=SLSA_PROVENANCE_V1, predicate=predicate)
    return dsse.parse_statement(payload)


# -- the key -----------------------------------------------------------------------------


@given(key_inputs)
def test_key_is_64_hex_and_deterministic(inputs: KeyInputs) -> None:
    again = KeyInputs(
        stage=inputs.stage,
        code=dict(reversed(list(inputs.code.items()))),
        params=json.loads(json.dumps(inputs.params)),
        seeds=dict(inputs.seeds),
        environment=dict(reversed(list(inputs.environment.items()))),
        upstream=tuple(reversed(inputs.upstream)),
    )
    assert re.fullmatch(r"[0-9a-f]{64}", inputs.key())
    assert again.key() == inputs.key()  # no order, no object identity counts


@settings(max_examples=60)
@given(key_inputs, st.sampled_from(["stage", "code", "params", "seeds", "environment", "outputs"]))
def test_key_changes_with_each_field(inputs: KeyInputs, field: str) -> None:
    if field == "stage":
        changed = replace(inputs, stage=inputs.stage + "x")
    elif field == "code":
        changed = replace(inputs, code={**inputs.code, "new.py::f": "f" * 64})
    elif field == "params":
        changed = replace(inputs, params={**inputs.params, "\x00new": None})
    elif field == "seeds":
        changed = replace(inputs, seeds={**inputs.seeds, "\x00new": 1})
    elif field == "environment":
        changed = replace(inputs, environment={**inputs.environment, "gpu": "\x00H200"})
    else:
        extra = Upstream("\x00upstream", "0" * 64, {"w": "1" * 64})
        changed = replace(inputs, upstream=(*inputs.upstream, extra))
    assert changed.key() != inputs.key()


@pytest.mark.parametrize(
    "changed",
    [
        replace(BASE, stage="finetune"),
        replace(BASE, code={**BASE.code, "helpers.py::scale": "f" * 64}),
        replace(BASE, params={"epochs": 9, "lr": 0.001}),
        replace(BASE, params={"epochs": 8.0, "lr": 0.001}),  # 8.0 is not 8 in JSON
        replace(BASE, params={"epochs": True, "lr": 0.001}),  # nor is true 1
        replace(BASE, seeds={"init": 8}),
        replace(BASE, environment={**BASE.environment, "numpy": "2.2.0"}),
        replace(BASE, environment={**BASE.environment, "env.OMP_NUM_THREADS": "4"}),
        replace(BASE, upstream=(Upstream("prepare", "c" * 64, {"x": "d" * 64, "y": "0" * 64}),)),
        replace(BASE, upstream=(Upstream("prepare", "c" * 64, {"x": "d" * 64}),)),
        replace(BASE, upstream=(Upstream("other", "c" * 64, {"x": "d" * 64, "y": "e" * 64}),)),
        replace(BASE, upstream=()),
    ],
    ids=lambda k: k.stage,
)
def test_each_input_changes_the_key(changed: KeyInputs) -> None:
    assert changed.key() != BASE.key()


def test_upstream_key_alone_does_not_change_the_key() -> None:
    """Early cutoff: an upstream re-executed to the same bytes under a new key leaves its
    dependents' keys as they were (the upstream key is sealed, not hashed)."""
    moved = replace(BASE, upstream=(Upstream("prepare", "9" * 64, BASE.upstream[0].outputs),))
    assert moved.key() == BASE.key()


# -- the statement: in-toto Statement v1, SLSA Provenance v1 -----------------------------


_RESOURCE_DESCRIPTOR = {
    "uri",
    "digest",
    "name",
    "downloadLocation",
    "mediaType",
    "content",
    "annotations",
}


def check_resource_descriptor(descriptor: dict[str, Any]) -> None:
    """https://github.com/in-toto/attestation/blob/main/spec/v1/resource_descriptor.md"""
    assert set(descriptor) <= _RESOURCE_DESCRIPTOR, descriptor
    assert {"uri", "digest", "content"} & set(descriptor), "one of uri, digest, content"
    for algorithm, value in descriptor.get("digest", {}).items():
        assert algorithm == "sha256" and re.fullmatch(r"[0-9a-f]{64}", value)
    if "content" in descriptor:
        base64.b64decode(descriptor["content"], validate=True)
    assert isinstance(descriptor.get("annotations", {}), dict)


def test_statement_has_the_in_toto_and_slsa_shapes() -> None:
    metric = {"name": "train_loss", "value": 0.25, "unit": "", "higher_is_better": False}
    statement = seal(
        BASE, {"w1": "1" * 64, "b1": "2" * 64}, metadata={"epochs": 8}, metrics=(metric,)
    )
    # in-toto Statement v1 (https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md)
    assert set(statement) == {"_type", "subject", "predicateType", "predicate"}
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    assert statement["subject"] == [
        {"name": "pretrain/b1", "digest": {"sha256": "2" * 64}},
        {"name": "pretrain/w1", "digest": {"sha256": "1" * 64}},
    ]
    # SLSA Provenance v1 (https://slsa.dev/provenance/v1)
    predicate = statement["predicate"]
    assert set(predicate) == {"buildDefinition", "runDetails"}
    build = predicate["buildDefinition"]
    assert set(build) <= {
        "buildType",
        "externalParameters",
        "internalParameters",
        "resolvedDependencies",
    }
    assert build["buildType"] == BUILD_TYPE and BUILD_TYPE.startswith("https://")
    assert build["externalParameters"] == {
        "stage": "pretrain",
        "params": {"epochs": 8, "lr": 0.001},
        "seeds": {"init": 7},
    }
    assert build["internalParameters"]["key"] == BASE.key()
    assert build["internalParameters"]["environment"] == dict(sorted(BASE.environment.items()))
    for descriptor in build["resolvedDependencies"]:
        check_resource_descriptor(descriptor)
    by_name = {d["name"]: d for d in build["resolvedDependencies"]}
    assert by_name["code:helpers.py::scale"]["digest"] == {"sha256": "a" * 64}
    assert by_name["stage:prepare/x"] == {
        "name": "stage:prepare/x",
        "digest": {"sha256": "d" * 64},
        "annotations": {"stage": "prepare", "key": "c" * 64, "output": "x"},
    }
    run = predicate["runDetails"]
    assert set(run) <= {"builder", "metadata", "byproducts"}
    assert set(run["builder"]) <= {"id", "version", "builderDependencies"}
    assert run["builder"]["id"] == BUILDER_ID
    assert all(isinstance(v, str) for v in run["builder"]["version"].values())
    assert set(run["metadata"]) <= {"invocationId", "startedOn", "finishedOn"}
    for stamp in ("startedOn", "finishedOn"):  # RFC 3339
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", run["metadata"][stamp])
    for descriptor in run["byproducts"]:
        check_resource_descriptor(descriptor)
    products = {d["name"]: d for d in run["byproducts"]}
    assert json.loads(base64.b64decode(products["metadata"]["content"])) == {"epochs": 8}
    assert products["metadata"]["mediaType"] == "application/json"
    assert products["metric:train_loss"]["annotations"] == metric


def test_envelope_signature_is_over_the_dsse_pae_of_the_public_vector(tmp_path) -> None:
    """The envelope ``StageCache.store`` writes is checked here by the rule of
    tests/vectors/signing.json (secure-systems-lab/dsse protocol.md), independently of
    ``core/dsse.py``."""
    import hashlib
    from pathlib import Path

    from pytest_rtgov.store.keys import Trust
    from pytest_rtgov.store.stage_cache import LocalBackend, StageCache

    vector = json.loads(
        (Path(__file__).parents[1] / "vectors" / "signing.json").read_text(encoding="utf-8")
    )["dsse"]["pae_example"]

    def pae(payload_type: str, body: bytes) -> bytes:
        kind = payload_type.encode()
        return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(body), body)

    assert pae(vector["payload_type"], vector["payload_utf8"].encode()).decode() == vector["pae"]
    blob = b"the output's bytes"
    subjects, predicate = provenance_statement(
        BASE,
        key=BASE.key(),
        outputs={"w": hashlib.sha256(blob).hexdigest()},
        metadata={},
        metrics=(),
        device="numpy",
        invocation="r/controller",
        started_on="2026-01-01T00:00:00Z",
        finished_on="2026-01-01T00:00:00Z",
        builder_version="1",
    )
    signer = generate_signer("ci")
    trust = Trust(keyring=(signer.verifier(),), local=(), keyring_path=None, required=True)
    cache = StageCache(LocalBackend(tmp_path), signer=signer, trust=trust, lock_dir=tmp_path)
    status, _ = cache.store(BASE.stage, BASE.key(), subjects, predicate, {"w": blob})
    assert status == "stored"
    envelope = json.loads(
        (tmp_path / "entries" / BASE.stage / f"{BASE.key()}.dsse.json").read_bytes()
    )
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    body = base64.b64decode(envelope["payload"])
    assert body == dsse.statement(subjects, predicate_type=SLSA_PROVENANCE_V1, predicate=predicate)
    public = Ed25519PublicKey.from_public_bytes(signer.verifier().public_key_bytes)
    signature = base64.b64decode(envelope["signatures"][0]["sig"])
    public.verify(signature, pae(dsse.PAYLOAD_TYPE_INTOTO, body))  # raises if it does not


# -- the round trip ----------------------------------------------------------------------


metric_dicts = st.builds(
    lambda name, value: {"name": name, "value": value, "unit": "", "higher_is_better": False},
    names,
    finite,
)


@settings(max_examples=80)
@given(
    key_inputs,
    output_maps,
    json_objects,
    st.lists(metric_dicts, max_size=3, unique_by=lambda m: m["name"]),
)
def test_round_trip_gives_back_inputs_and_outputs(
    inputs: KeyInputs, outputs: dict[str, str], metadata: dict[str, Any], metrics: list[Any]
) -> None:
    sealed = parse_sealed_stage(
        seal(inputs, outputs, metadata=metadata, metrics=tuple(metrics), device="cupy")
    )
    assert sealed.stage == inputs.stage
    assert sealed.key == inputs.key()
    assert sealed.outputs == outputs
    assert sealed.code == dict(inputs.code)
    assert sealed.params == json.loads(json.dumps(inputs.params))
    assert sealed.seeds == dict(inputs.seeds)
    assert sealed.environment == dict(inputs.environment)
    assert sealed.upstream == {u.stage: u for u in inputs.upstream}
    assert sealed.metadata == json.loads(json.dumps(metadata))
    assert list(sealed.metrics) == metrics
    assert sealed.device == "cupy"
    assert sealed.invocation == "run-1/controller"
    assert sealed.key_inputs().key() == inputs.key()
    assert chain_problem(sealed, inputs.key(), {u.stage: u for u in inputs.upstream}) is None


def test_parse_refuses_a_statement_of_another_build_type() -> None:
    statement = seal(BASE, {"w": "1" * 64})
    statement["predicate"]["buildDefinition"]["buildType"] = "https://example.com/other"
    with pytest.raises(StageEntryError, match=re.escape("buildType 'https://example.com/other'")):
        parse_sealed_stage(statement)


def test_parse_refuses_a_subject_of_another_stage() -> None:
    statement = seal(BASE, {"w": "1" * 64})
    statement["subject"][0]["name"] = "prepare/w"
    with pytest.raises(StageEntryError, match="'prepare/w' is not an output of stage 'pretrain'"):
        parse_sealed_stage(statement)


def test_parse_refuses_a_missing_field_naming_it() -> None:
    statement = seal(BASE, {"w": "1" * 64})
    del statement["predicate"]["buildDefinition"]["externalParameters"]["params"]
    with pytest.raises(StageEntryError, match=r"externalParameters\.params: expected a dict"):
        parse_sealed_stage(statement)


# -- the chain ---------------------------------------------------------------------------


def current() -> dict[str, Upstream]:
    return {u.stage: u for u in BASE.upstream}


def test_chain_of_a_matching_entry_is_fine() -> None:
    sealed = parse_sealed_stage(seal(BASE, {"w": "1" * 64}))
    assert chain_problem(sealed, BASE.key(), current()) is None


def test_chain_refuses_an_entry_of_another_key() -> None:
    sealed = parse_sealed_stage(seal(BASE, {"w": "1" * 64}))
    other = "f" * 64
    assert chain_problem(sealed, other, current()) == (
        f"the entry seals key {BASE.key()[:12]}, not {other[:12]}"
    )


def test_chain_refuses_sealed_inputs_that_do_not_hash_to_the_key() -> None:
    """A statement whose params were edited but whose key was kept (a forged entry)."""
    sealed = parse_sealed_stage(seal(BASE, {"w": "1" * 64}))
    forged = replace(sealed, params={"epochs": 1, "lr": 0.001})
    reason = chain_problem(forged, BASE.key(), current())
    assert reason is not None and reason.startswith("the entry's sealed inputs hash to ")
    assert reason.endswith(f"not to its key {BASE.key()[:12]}")


def test_chain_refuses_inputs_from_other_stages() -> None:
    sealed = parse_sealed_stage(seal(BASE, {"w": "1" * 64}))
    swapped = {"other": replace(BASE.upstream[0], stage="other")}
    assert chain_problem(sealed, BASE.key(), swapped) == (
        "the entry's inputs come from ['prepare'], the stage's from ['other']"
    )


def test_chain_refuses_an_input_swapped_in_from_another_run() -> None:
    """The MATCH rule: the entry's inputs must be the upstream outputs in use now. The
    key passed is the entry's own, as an attacker would keep it."""
    sealed = parse_sealed_stage(seal(BASE, {"w": "1" * 64}))
    now = {"prepare": Upstream("prepare", "c" * 64, {"x": "d" * 64, "y": "7" * 64})}
    assert chain_problem(sealed, BASE.key(), now) == (
        f"chain: input prepare/y is sha256 {'7' * 12}, the entry was built from {'e' * 12}"
    )


def test_chain_refuses_a_missing_input() -> None:
    sealed = parse_sealed_stage(seal(BASE, {"w": "1" * 64}))
    now = {"prepare": Upstream("prepare", "c" * 64, {"x": "d" * 64})}
    assert chain_problem(sealed, BASE.key(), now) == (
        f"chain: input prepare/y is sha256 -, the entry was built from {'e' * 12}"
    )


# -- JSON-only values --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"lr": float("nan")}, "params['lr'] is nan, expected a finite number"),
        ({"lr": float("inf")}, "params['lr'] is inf, expected a finite number"),
        ({"layers": [1, float("-inf")]}, "params['layers'][1] is -inf"),
        ({"ids": {1, 2}}, "params['ids'] is a builtins.set, expected JSON"),
        ({"lr": np.float32(0.1)}, "params['lr'] is a numpy.float32"),
        ({"lr": np.float64(0.1)}, "params['lr'] is a numpy.float64"),
        ({"n": np.int64(3)}, "params['n'] is a numpy.int64"),
        ({"on": np.bool_(True)}, "params['on'] is a numpy.bool"),
        ({"w": np.zeros(2)}, "params['w'] is a numpy.ndarray"),
        ({"opt": {1: "a"}}, "params['opt'] has the key 1, expected a string"),
        ({"f": print}, "params['f'] is a builtins.builtin_function_or_method"),
        ({"s": "caf\udce9"}, "params['s'] is a string UTF-8 cannot encode"),
    ],
)
def test_check_json_value_names_the_place(value: Any, message: str) -> None:
    with pytest.raises(StageDefinitionError) as caught:
        check_json_value(value, "params")
    assert message in str(caught.value)


def test_check_json_value_accepts_plain_json() -> None:
    check_json_value(
        {"lr": 1e-3, "n": 2**70, "on": False, "none": None, "layers": [128, (64, 32)], "é": "ü"},
        "params",
    )


@given(json_objects)
def test_check_json_value_accepts_what_canonical_json_writes(value: dict[str, Any]) -> None:
    check_json_value(value, "params")


# -- the session's exit status -----------------------------------------------------------


def fixtures(*events: dict[str, Any] | None) -> list[Any]:
    setups = [SimpleNamespace(stage=event) for event in events]
    return [SimpleNamespace(setups=setups)]


def test_session_problems_without_stages_leave_the_status() -> None:
    assert session_problems(fixtures(None), exit_status=1) == (1, [])
    hits = fixtures({"stage": "prepare", "outcome": "hit"}, {"stage": "p", "outcome": "stored"})
    assert session_problems(hits, exit_status=0) == (0, [])


def test_a_fatal_refusal_makes_the_session_7() -> None:
    event = {"stage": "pretrain", "outcome": "refused", "reason": "not signed", "fatal": True}
    status, lines = session_problems(fixtures(event), exit_status=0)
    assert status == 7
    assert lines == [
        "stage pretrain: cache entry refused where signatures are required: not signed"
    ]
    assert session_problems(fixtures(event), exit_status=6)[0] == 7


def test_a_refusal_outside_ci_leaves_the_status() -> None:
    event = {"stage": "pretrain", "outcome": "refused", "reason": "not signed"}
    assert session_problems(fixtures(event), exit_status=0) == (0, [])


def test_a_finding_makes_a_passing_session_6_and_keeps_a_failure() -> None:
    event = {"stage": "pretrain", "outcome": "recheck", "finding": "nondeterministic: w"}
    assert session_problems(fixtures(event), exit_status=0) == (
        6,
        ["stage pretrain: nondeterministic: w"],
    )
    assert session_problems(fixtures(event), exit_status=1)[0] == 1


def test_a_fatal_refusal_and_a_finding_give_7_and_both_lines() -> None:
    fatal = {"stage": "a", "reason": "r", "fatal": True}
    finding = {"stage": "b", "finding": "nondeterministic: x"}
    status, lines = session_problems(fixtures(finding, fatal), exit_status=0)
    assert status == 7
    assert len(lines) == 2
