"""Stages: the cache key, the SLSA provenance that seals an entry, and the checks of a hit.

A stage is a fixture whose value is named arrays (``plugin/stages.py``). Its cache key is
sha256 over the canonical JSON of everything that decides its outputs, gathered before
the body runs (:class:`KeyInputs`): the stage's name, the digests of the code it reaches
(``store/stage_code.py``), its params and seeds, the numerics-relevant environment, and
each upstream stage's name and output digests.

An upstream stage enters the key through its *outputs*, not its key: a re-executed
upstream whose outputs are byte-identical leaves its dependents' keys, and so their
entries, unchanged (early cutoff). The upstream's key is still sealed in the entry
(``resolvedDependencies``) and checked on every hit (:func:`chain_problem`).

An entry is an in-toto Statement v1 whose subjects are the output arrays (``.npy``
bytes, by sha256) and whose predicate is SLSA Provenance v1 (:func:`provenance_statement`),
signed in a DSSE envelope by ``store/stage_cache.py``.

>>> inputs = KeyInputs(stage="prepare", code={"a.py::f": "0" * 64}, params={"n": 3},
...                    seeds={}, environment={"numpy": "2.1.0"}, upstream=())
>>> len(inputs.key()), inputs.key() == inputs.key()
(64, True)
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from pytest_rtgov.core.canonical import canonical_json
from pytest_rtgov.core.stage_findings import output_differences, session_problems
from pytest_rtgov.errors import RtgovError

__all__ = [
    "BUILDER_ID", "BUILD_TYPE", "OUTCOMES", "SLSA_PROVENANCE_V1", "KeyInputs", "SealedStage",
    "StageDefinitionError", "StageEntryError", "Upstream", "chain_problem", "check_json_value",
    "output_differences", "parse_sealed_stage", "provenance_statement", "session_problems",
]  # fmt: skip

BUILD_TYPE: Final = "https://pytest-rtgov.dev/stage/v1"
"""The SLSA ``buildType`` of a stage entry."""
SLSA_PROVENANCE_V1: Final = "https://slsa.dev/provenance/v1"
BUILDER_ID: Final = "https://pytest-rtgov.dev/builder/pytest"
KEY_FORMAT: Final = 1
OUTCOMES: Final = ("hit", "miss", "stored", "refused", "recheck")
"""A stage's outcome in a session: served from the cache; executed and not stored (the
reason says why); executed and stored; an entry refused and the stage re-executed (the
reason says why); re-executed to compare with its entry (``--rtgov-stage-recheck``)."""

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,99}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SURROGATE = re.compile("[\ud800-\udfff]")


class StageDefinitionError(RtgovError):
    """A stage's declaration or value is unusable (the message names the stage and place)."""


class StageEntryError(RtgovError):
    """A cache entry's statement is not a stage provenance this version can read."""


def check_json_value(value: Any, place: str) -> None:
    """Raise :class:`StageDefinitionError` unless ``value`` is plain JSON: str, int,
    finite float, bool, None, and lists and string-keyed dicts of those.

    >>> check_json_value({"lr": 1e-3, "layers": [128, 128]}, "params")
    >>> check_json_value({"lr": float("nan")}, "params")
    Traceback (most recent call last):
    ...
    pytest_rtgov.core.stages.StageDefinitionError: params['lr'] is nan, expected a finite number
    """
    if type(value).__module__ == "numpy":  # np.float64 is a float: refused by name
        kind = f"numpy.{type(value).__qualname__}"
        raise StageDefinitionError(f"{place} is a {kind}, expected JSON: use .item() or .tolist()")
    if isinstance(value, str) and _SURROGATE.search(value):
        raise StageDefinitionError(f"{place} is a string UTF-8 cannot encode (a lone surrogate)")
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise StageDefinitionError(f"{place} is {value!r}, expected a finite number")
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_json_value(item, f"{place}[{index}]")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise StageDefinitionError(f"{place} has the key {key!r}, expected a string")
            check_json_value(key, f"{place}'s key {key!r}")
            check_json_value(item, f"{place}[{key!r}]")
        return
    raise StageDefinitionError(
        f"{place} is a {type(value).__module__}.{type(value).__qualname__}, expected JSON "
        "(str, int, float, bool, None, and lists and dicts of those)"
    )


@dataclass(frozen=True)
class Upstream:
    """An upstream stage as its dependent saw it: its key and its output digests."""

    stage: str
    key: str
    outputs: Mapping[str, str]  # output name -> sha256 hex of its .npy bytes

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "key": self.key, "outputs": dict(sorted(self.outputs.items()))}


@dataclass(frozen=True)
class KeyInputs:
    """Everything a stage's key covers, as builtin values."""

    stage: str
    code: Mapping[str, str]  # "path::qualname" -> sha256 hex of the normalized code
    params: Mapping[str, Any]
    seeds: Mapping[str, Any]
    environment: Mapping[str, str]
    upstream: tuple[Upstream, ...] = field(default=())
    # the param of each parametrized plain fixture the stage reaches (its repr)
    fixture_params: Mapping[str, str] = field(default_factory=dict)

    def key_document(self) -> dict[str, Any]:
        """What is hashed: upstream stages by name and outputs only (early cutoff)."""
        extra = {"fixture_params": dict(sorted(self.fixture_params.items()))}
        return {
            **(extra if self.fixture_params else {}),
            "format": KEY_FORMAT,
            "stage": self.stage,
            "code": dict(sorted(self.code.items())),
            "params": dict(self.params),
            "seeds": dict(self.seeds),
            "environment": dict(sorted(self.environment.items())),
            "upstream": [
                {"stage": u.stage, "outputs": dict(sorted(u.outputs.items()))}
                for u in sorted(self.upstream, key=lambda u: u.stage)
            ],
        }

    def key(self) -> str:
        """64 hex digits: sha256 of the canonical JSON of :meth:`key_document`."""
        return hashlib.sha256(canonical_json(self.key_document())).hexdigest()


def provenance_statement(
    inputs: KeyInputs,
    *,
    key: str,
    outputs: Mapping[str, str],
    metadata: Mapping[str, Any],
    metrics: tuple[Mapping[str, Any], ...],
    device: str,
    invocation: str,
    started_on: str,
    finished_on: str,
    builder_version: str,
) -> tuple[dict[str, str], dict[str, Any]]:
    """``(subjects, predicate)`` of a stage entry: the outputs, and SLSA Provenance v1.

    ``externalParameters`` holds what the user declared (params, seeds); the key and the
    environment it covered are ``internalParameters``; ``resolvedDependencies`` lists the
    code digests (``code:`` names) and every upstream output as a ResourceDescriptor
    (``stage:`` names, annotated with the upstream's key); ``byproducts`` carry the metrics
    the body recorded and the stage's metadata (canonical JSON, base64 ``content``).
    """
    dependencies: list[dict[str, Any]] = [
        {"name": f"code:{name}", "digest": {"sha256": digest}}
        for name, digest in sorted(inputs.code.items())
    ]
    for upstream in sorted(inputs.upstream, key=lambda u: u.stage):
        dependencies += [
            {
                "name": f"stage:{upstream.stage}/{output}",
                "digest": {"sha256": digest},
                "annotations": {"stage": upstream.stage, "key": upstream.key, "output": output},
            }
            for output, digest in sorted(upstream.outputs.items())
        ]
    byproducts: list[dict[str, Any]] = [
        {
            "name": "metadata",
            "mediaType": "application/json",
            "content": base64.b64encode(canonical_json(dict(metadata))).decode("ascii"),
        }
    ]
    byproducts += [  # a ResourceDescriptor needs one of uri, digest or content
        {"name": f"metric:{m['name']}", "annotations": dict(m), "mediaType": "application/json",
         "content": base64.b64encode(canonical_json(dict(m))).decode("ascii")}
        for m in metrics
    ]
    predicate = {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "stage": inputs.stage,
                "params": dict(inputs.params),
                "seeds": dict(inputs.seeds),
                **(
                    {"fixtureParams": dict(sorted(inputs.fixture_params.items()))}
                    if inputs.fixture_params
                    else {}
                ),
            },
            "internalParameters": {
                "key": key,
                "environment": dict(sorted(inputs.environment.items())),
                "device": device,
            },
            "resolvedDependencies": dependencies,
        },
        "runDetails": {
            "builder": {"id": BUILDER_ID, "version": {"pytest-rtgov": builder_version}},
            "metadata": {
                "invocationId": invocation,
                "startedOn": started_on,
                "finishedOn": finished_on,
            },
            "byproducts": byproducts,
        },
    }
    subjects = {f"{inputs.stage}/{name}": digest for name, digest in sorted(outputs.items())}
    return subjects, predicate


@dataclass(frozen=True)
class SealedStage:
    """What a verified entry's statement says, read back."""

    stage: str
    key: str
    outputs: dict[str, str]  # output name -> sha256 hex
    upstream: dict[str, Upstream]  # by stage name
    code: dict[str, str]
    params: dict[str, Any]
    seeds: dict[str, Any]
    environment: dict[str, str]
    device: str
    metadata: dict[str, Any]
    metrics: tuple[dict[str, Any], ...]
    invocation: str
    finished_on: str
    fixture_params: dict[str, str] = field(default_factory=dict)

    def key_inputs(self) -> KeyInputs:
        return KeyInputs(
            stage=self.stage,
            code=self.code,
            params=self.params,
            seeds=self.seeds,
            environment=self.environment,
            upstream=tuple(self.upstream.values()),
            fixture_params=self.fixture_params,
        )


def _get(mapping: Any, key: str, kind: type, place: str) -> Any:
    value = mapping.get(key) if isinstance(mapping, Mapping) else None
    if not isinstance(value, kind):
        raise StageEntryError(f"{place}.{key}: expected a {kind.__name__}")
    return value


def parse_sealed_stage(statement: Mapping[str, Any]) -> SealedStage:
    """Read a stage entry's statement (already verified); raises :class:`StageEntryError`."""
    import json

    predicate = _get(statement, "predicate", dict, "statement")
    build = _get(predicate, "buildDefinition", dict, "predicate")
    if build.get("buildType") != BUILD_TYPE:
        raise StageEntryError(f"buildType {build.get('buildType')!r}, expected {BUILD_TYPE!r}")
    external = _get(build, "externalParameters", dict, "buildDefinition")
    internal = _get(build, "internalParameters", dict, "buildDefinition")
    stage = _get(external, "stage", str, "externalParameters")
    prefix = stage + "/"
    outputs: dict[str, str] = {}
    for subject in _get(statement, "subject", list, "statement"):
        name = subject.get("name", "") if isinstance(subject, Mapping) else ""
        if not isinstance(name, str) or not name.startswith(prefix):
            raise StageEntryError(f"subject {name!r} is not an output of stage {stage!r}")
        digest = _get(_get(subject, "digest", dict, f"subject {name}"), "sha256", str, name)
        if not _HEX64.match(digest):
            raise StageEntryError(f"subject {name}: sha256 {digest!r}, expected 64 hex digits")
        outputs[name[len(prefix) :]] = digest
    code: dict[str, str] = {}
    upstream: dict[str, dict[str, Any]] = {}
    for dep in _get(build, "resolvedDependencies", list, "buildDefinition"):
        name = _get(dep, "name", str, "resolvedDependencies[]")
        digest = _get(_get(dep, "digest", dict, name), "sha256", str, name)
        if not _HEX64.match(digest):
            raise StageEntryError(f"{name}: sha256 {digest!r}, expected 64 hex digits")
        if name.startswith("code:"):
            code[name[5:]] = digest
        elif name.startswith("stage:"):
            notes = _get(dep, "annotations", dict, name)
            entry = upstream.setdefault(
                _get(notes, "stage", str, name),
                {"key": _get(notes, "key", str, name), "outputs": {}},
            )
            entry["outputs"][_get(notes, "output", str, name)] = digest
        else:
            raise StageEntryError(f"resolvedDependencies: unknown dependency {name!r}")
    details = _get(predicate, "runDetails", dict, "predicate")
    metadata: dict[str, Any] = {}
    metrics: list[dict[str, Any]] = []
    for product in _get(details, "byproducts", list, "runDetails"):
        name = _get(product, "name", str, "byproducts[]")
        if name == "metadata":
            try:
                metadata = json.loads(base64.b64decode(_get(product, "content", str, name)))
            except ValueError as exc:
                raise StageEntryError(f"byproducts metadata: {exc}") from exc
        elif name.startswith("metric:"):
            metrics.append(dict(_get(product, "annotations", dict, name)))
    run = _get(details, "metadata", dict, "runDetails")
    key = _get(internal, "key", str, "internalParameters")
    if not _HEX64.match(key):
        raise StageEntryError(f"internalParameters.key {key!r}: expected 64 hex digits")
    return SealedStage(
        stage=stage,
        key=key,
        outputs=outputs,
        upstream={
            name: Upstream(stage=name, key=value["key"], outputs=value["outputs"])
            for name, value in sorted(upstream.items())
        },
        code=code,
        params=dict(_get(external, "params", dict, "externalParameters")),
        seeds=dict(_get(external, "seeds", dict, "externalParameters")),
        environment=dict(_get(internal, "environment", dict, "internalParameters")),
        device=str(internal.get("device", "numpy")),
        metadata=metadata,
        metrics=tuple(metrics),
        invocation=str(run.get("invocationId", "")),
        finished_on=str(run.get("finishedOn", "")),
        fixture_params={
            str(k): str(v) for k, v in dict(external.get("fixtureParams") or {}).items()
        },
    )


def chain_problem(sealed: SealedStage, key: str, upstream: Mapping[str, Upstream]) -> str | None:
    """Why ``sealed`` may not serve a stage whose key is ``key`` and whose inputs are
    ``upstream`` (by stage name), or None: the key must match, and the entry's inputs must
    be exactly the upstream outputs in use now (in-toto's MATCH rule). The upstream keys
    sealed beside them are provenance, not compared: a re-executed upstream with identical
    outputs has a new key and the same bytes (early cutoff)."""
    if sealed.key != key:
        return f"the entry seals key {sealed.key[:12]}, not {key[:12]}"
    recomputed = sealed.key_inputs().key()
    if recomputed != key:
        return f"the entry's sealed inputs hash to {recomputed[:12]}, not to its key {key[:12]}"
    if set(sealed.upstream) != set(upstream):
        return (
            f"the entry's inputs come from {sorted(sealed.upstream)}, "
            f"the stage's from {sorted(upstream)}"
        )
    for name, current in sorted(upstream.items()):
        recorded = sealed.upstream[name]
        if dict(recorded.outputs) != dict(current.outputs):
            changed = sorted(set(recorded.outputs.items()) ^ set(current.outputs.items()))
            return (
                f"chain: input {name}/{changed[0][0]} is sha256 "
                f"{dict(current.outputs).get(changed[0][0], '-')[:12]}, the entry was built "
                f"from {dict(recorded.outputs).get(changed[0][0], '-')[:12]}"
            )
    return None


def stage_name_ok(name: str) -> bool:
    return bool(_NAME.match(name))
