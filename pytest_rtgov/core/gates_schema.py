"""The shape of ``gates.toml``: msgspec Structs for its tables, and its JSON Schema.

One role: the keys, types, ranges and patterns of the gates file, declared once.
:func:`pytest_rtgov.core.gates_config.parse_gates` decodes a file with these Structs
(``core.schema.convert``: errors name the file, the key path and the field's
``description``), then applies what a type cannot say: the units of quantities
("250 ms"), rules that combine keys, unique names. :func:`json_schema` publishes the
shape for editors (``docs/gates.schema.json``; docs/gates.md, "Editor support"),
with the combined rules JSON Schema can state added. Pure: no disk.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, Meta, UnsetType

from pytest_rtgov.core.metrics import BUILTIN_METRICS

__all__ = [
    "AB_METRICS",
    "CALIBRATED_METRICS",
    "QUANTITY_PATTERN",
    "Defaults",
    "GateTable",
    "GatesFile",
    "QuarantineTable",
    "ReplayTable",
    "json_schema",
    "json_schema_text",
]

AB_METRICS = ("wall_time", "cpu_time", "gpu_time")
CALIBRATED_METRICS = ("wall_time", "cpu_time")
QUANTITY_PATTERN = r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z]+)\s*$"
_METRIC_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.:/-]*$"

_NonEmpty = Annotated[str, Meta(min_length=1)]
Selector = Annotated[_NonEmpty | list[_NonEmpty], Meta(description="a list of non-empty strings")]
# int as well as float: a 400-digit integer is then a finite-number error, not an overflow.
Quantity = Annotated[
    int | float | str,
    Meta(
        description='a number, or for a builtin metric a quantity like "250 ms" or "512 MiB"',
        examples=[0.9, "250 ms", "512 MiB"],
    ),
]


class Defaults(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """[defaults]: settings shared by every gate."""

    confidence: Annotated[
        float,
        Meta(
            ge=0.5,
            lt=1,
            title="Confidence of the statistical rules (Bonferroni over the session)",
            description="a number from 0.5 to below 1",
        ),
    ] = 0.99
    min_samples: Annotated[
        int,
        Meta(ge=2, le=10_000, title="Fewer samples on either side: the threshold alone decides"),
    ] = 5
    baseline: Annotated[
        str,
        Meta(
            min_length=1,
            title="Baseline directory, relative to the gates file, inside the project",
            description="a path",
        ),
    ] = ".rtgov/baseline"
    ab_ref: Annotated[
        str,
        Meta(
            pattern=r"^[^\s-]\S*$",
            title='Git ref of the A/B baseline code, or "accepted" (the last refresh\'s code)',
            description="a git ref or revision, without whitespace and not starting with '-'",
        ),
    ] = "accepted"
    ab_pairs: Annotated[
        int,
        Meta(
            ge=5,
            le=1000,
            title="A/B pairs at the first look and between looks, after 2 warm-up pairs",
        ),
    ] = 20
    ab_max_pairs: Annotated[
        int, Meta(ge=5, le=100_000, title="Most A/B pairs per test (>= ab_pairs): the last look")
    ] = 100
    ab_max_seconds: Annotated[
        float,
        Meta(
            gt=0,
            le=86_400,
            title="No further A/B look once a test's pairs would take longer than this",
            description="a number of seconds above 0",
        ),
    ] = 30.0
    confirm: Annotated[
        int, Meta(ge=0, le=5, title="Re-measured A/B blocks that must confirm a breach")
    ] = 0
    rounds: (
        Annotated[
            int,
            Meta(ge=1, le=10_000, title="Rounds of gated tests without @pytest.mark.rtgov"),
        ]
        | UnsetType
    ) = UNSET


class GateTable(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """[[gates]]: one gate: which subjects, which metric, which rules."""

    name: Annotated[
        str, Meta(pattern=r"\S", title="Unique name of the gate", description="a non-empty string")
    ]
    metric: Annotated[
        str,
        Meta(
            pattern=_METRIC_PATTERN,
            title="A builtin measurement or a metric the tests record",
            description="a builtin metric or a metric name",
            examples=list(BUILTIN_METRICS),
        ),
    ]
    tests: Annotated[Selector, Meta(title="Node-id globs (fnmatch)")] | UnsetType = UNSET
    fixtures: Annotated[Selector, Meta(title="Fixture-name globs")] | UnsetType = UNSET
    markers: Annotated[Selector, Meta(title="Registered marker names")] | UnsetType = UNSET
    min: Annotated[Quantity, Meta(title="Lower budget")] | UnsetType = UNSET
    max: Annotated[Quantity, Meta(title="Upper budget")] | UnsetType = UNSET
    max_regression_pct: (
        Annotated[
            float,
            Meta(
                ge=0,
                title="Worse than the baseline by more than this percentage: a breach",
                description="a percentage: a number >= 0, e.g. 10 for 10%",
            ),
        ]
        | UnsetType
    ) = UNSET
    max_regression: (
        Annotated[Quantity, Meta(title="Worse than the baseline by more than this: a breach")]
        | UnsetType
    ) = UNSET
    exact: Annotated[bool, Meta(title="Digests must equal the baseline's")] = False
    ab: Annotated[bool, Meta(title="Timing against the code at ab_ref, same process")] = False
    calibrated: Annotated[bool, Meta(title="Time / calibration kernel time")] = False


class ReplayTable(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """[[replay]]: a tolerance `rtgov replay` grants the checkpoints it selects."""

    name: (
        Annotated[
            str,
            Meta(pattern=r"\S", title="Unique name of the rule", description="a non-empty string"),
        ]
        | UnsetType
    ) = UNSET
    checkpoint: Annotated[
        str,
        Meta(
            min_length=1,
            title="Checkpoint name or glob (fnmatch)",
            description="a checkpoint name or glob",
        ),
    ]
    tests: Annotated[Selector, Meta(title="Node-id globs (fnmatch)")] | UnsetType = UNSET
    fixtures: Annotated[Selector, Meta(title="Fixture-name globs")] | UnsetType = UNSET
    markers: Annotated[Selector, Meta(title="Registered marker names")] | UnsetType = UNSET
    max_ulp: (
        Annotated[
            int,
            Meta(
                ge=0,
                title="Most ULP (units in the last place, numpy's) between recorded and replayed",
                description="an integer >= 0",
            ),
        ]
        | UnsetType
    ) = UNSET
    rtol: (
        Annotated[
            float,
            Meta(ge=0, title="Relative tolerance, as numpy.isclose", description="a number >= 0"),
        ]
        | UnsetType
    ) = UNSET
    atol: (
        Annotated[
            float,
            Meta(ge=0, title="Absolute tolerance, as numpy.isclose", description="a number >= 0"),
        ]
        | UnsetType
    ) = UNSET


class QuarantineTable(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """[quarantine]: limits of rtgov.quarantine.json's entries (docs/quarantine.md)."""

    max_days: Annotated[
        int,
        Meta(
            ge=1,
            le=90,
            title="Longest allowed quarantine, days from created to expires",
            description="an integer number of days from 1 to 90",
        ),
    ] = 14


class GatesFile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """gates.toml: the gates of a project (docs/gates.md)."""

    defaults: Annotated[Defaults, Meta(description="a table ([defaults])")] = Defaults()
    gates: Annotated[
        tuple[Annotated[GateTable, Meta(description="a table ([[gates]])")], ...],
        Meta(description="an array of tables ([[gates]])"),
    ] = ()
    replay: Annotated[
        tuple[Annotated[ReplayTable, Meta(description="a table ([[replay]])")], ...],
        Meta(description="an array of tables ([[replay]])"),
    ] = ()
    quarantine: Annotated[
        QuarantineTable, Meta(description="a table ([quarantine])")
    ] = QuarantineTable()


_NUMERIC_RULES = ("min", "max", "max_regression_pct", "max_regression")


def _when(flag: str, then: dict[str, Any]) -> dict[str, Any]:
    return {"if": {"properties": {flag: {"const": True}}, "required": [flag]}, "then": then}


def _any_key(keys: tuple[str, ...]) -> list[dict[str, Any]]:
    return [{"required": [key]} for key in keys]


def json_schema() -> dict[str, Any]:
    """The JSON Schema of ``gates.toml`` (draft 2020-12), for editors.

    msgspec's schema of :class:`GatesFile`, plus what the Structs cannot state and
    JSON Schema can: a gate needs a selector and a rule; ``exact`` stands alone;
    ``ab`` and ``calibrated`` need timing metrics; quantity strings have a pattern.
    Units against the metric and unique names are left to ``rtgov`` itself.
    """
    schema = msgspec.json.schema(GatesFile)
    gate = schema["$defs"]["GateTable"]
    for key in ("min", "max", "max_regression"):
        prop = gate["properties"][key]
        prop["anyOf"] = [{"type": "number"}, {"type": "string", "pattern": QUANTITY_PATTERN}]
    gate["allOf"] = [
        {"anyOf": _any_key(("tests", "fixtures", "markers"))},
        {"anyOf": [*_any_key(_NUMERIC_RULES), _when("exact", {})["if"]]},
        _when("exact", {"not": {"anyOf": _any_key(_NUMERIC_RULES)}}),
        _when(
            "ab",
            {
                "properties": {
                    "metric": {"enum": list(AB_METRICS)},
                    "calibrated": {"const": False},
                },
                "anyOf": _any_key(("max_regression_pct", "max_regression")),
            },
        ),
        _when(
            "calibrated",
            {
                "properties": {
                    "metric": {"enum": list(CALIBRATED_METRICS)},
                    **{key: {"type": "number"} for key in ("min", "max", "max_regression")},
                }
            },
        ),
    ]
    schema["$defs"]["ReplayTable"]["allOf"] = [
        {"anyOf": _any_key(("max_ulp", "rtol", "atol"))},
        {"not": {"required": ["max_ulp"], "anyOf": _any_key(("rtol", "atol"))}},
    ]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "pytest-rtgov gates.toml",
        "description": "Gates of pytest-rtgov: see docs/gates.md",
        **schema,
    }


def json_schema_text() -> str:
    """:func:`json_schema` as the text of ``docs/gates.schema.json``."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"
