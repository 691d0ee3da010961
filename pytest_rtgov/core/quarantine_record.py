"""The run record's ``quarantine`` section, pure: what the entries matched, what they excuse.

A session (``plugin/quarantine.py``) builds the section from the checked entries
(:class:`~pytest_rtgov.core.quarantine.Quarantine`), the record's tests and the gate
results; ``rtgov audit`` (``core/audit.py``) and :meth:`Verdict.of_record
<pytest_rtgov.core.verdict.Verdict.of_record>` read it back. The section is the one
source both read, so a session and its audit excuse the same failures::

    {"file": "rtgov.quarantine.json", "digest": "sha256:<hex of the file's bytes>",
     "signatures_required": bool,
     "entries": [CheckedEntry.to_dict(), ...],                  # sorted by subject
     "tests": [{"nodeid", "entry", "outcome", "owner", "issue", "expires"}],
     "gates": [{"gate", "subject", "metric", "status", "entry", "outcome",
                "owner", "issue", "expires"}]}

Only an entry whose state is ``valid`` excuses a failure (:func:`excused_tests`,
:func:`excused_gates`). :func:`session_problems` says what the entries that excuse
nothing do to the session: an expired entry naming a test or gate of the session fails
it (6, :data:`~pytest_rtgov.core.constants.EXIT_GATE_BREACHED`, naming owner and issue);
where signatures are required an unsigned, untrusted or tampered entry fails it (7);
elsewhere such an entry is a warning.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import date
from typing import Any, Final

from pytest_rtgov.core.constants import ExitCode
from pytest_rtgov.core.quarantine import (
    QUARANTINE_FILE,
    QUARANTINED_FAIL,
    QUARANTINED_PASS,
    CheckedEntry,
    Entry,
    Quarantine,
    QuarantineEntryError,
    parse_day,
)

__all__ = [
    "TODAY_VARIABLE",
    "UNTRUSTED_STATES",
    "active_tests",
    "audited_quarantine",
    "build_section",
    "excused_among",
    "excused_gates",
    "excused_keep_gates",
    "excused_tests",
    "gate_outcome",
    "merge_sections",
    "quarantine_of",
    "session_problems",
    "test_outcome",
    "today_from",
    "with_gates",
]

# Tests only: the day entries are checked on (YYYY-MM-DD) instead of the machine's date.
TODAY_VARIABLE: Final = "RTGOV_TODAY"
UNTRUSTED_STATES: Final = ("unsigned", "untrusted", "tampered", "revoked")
_FAILED: Final = ("failed", "error")
_BREACHING: Final = ("breach", "missing")  # core.verdict.BREACHING (verdict imports us)


def today_from(environ: Mapping[str, str], default: date, *, required: bool = False) -> date:
    """``$RTGOV_TODAY`` when set (tests that need an entry to have expired), else
    ``default``; a value that is not a date is a :class:`QuarantineEntryError` (exit 4).
    Where signatures are ``required`` (CI) the variable may only move the day forward:
    a day before ``default`` would revive expired entries, and is refused (exit 4)."""
    value = environ.get(TODAY_VARIABLE, "").strip()
    if not value:
        return default
    try:
        day = parse_day(value, f"${TODAY_VARIABLE}")
    except QuarantineEntryError as exc:
        raise QuarantineEntryError(str(exc), field=TODAY_VARIABLE) from None
    if required and day < default:
        raise QuarantineEntryError(
            f"${TODAY_VARIABLE}: expected a day on or after today ({default.isoformat()}) "
            f"where signatures are required (a day in the past would revive expired "
            f"quarantine entries), got {value}",
            field=TODAY_VARIABLE,
        )
    return day


def test_outcome(outcome: str) -> str | None:
    """A matched test's quarantine outcome: ``quarantined-fail`` when it failed (call,
    setup or teardown error), ``quarantined-pass`` when it passed; None when it did not
    run (skipped): nothing to excuse, not listed."""
    if outcome in _FAILED:
        return QUARANTINED_FAIL
    return QUARANTINED_PASS if outcome == "passed" else None


def gate_outcome(status: str) -> str:
    """A matched gate result's quarantine outcome: a breach (``breach``, ``missing``)
    is ``quarantined-fail``; any other status ``quarantined-pass``."""
    return QUARANTINED_FAIL if status in _BREACHING else QUARANTINED_PASS


def _who(checked: CheckedEntry) -> dict[str, str]:
    entry = checked.entry
    return {"entry": checked.id, "owner": entry.owner, "issue": entry.issue,
            "expires": entry.expires}  # fmt: skip


def build_section(
    quarantine: Quarantine,
    *,
    digest: str,
    tests: Iterable[tuple[str, str]],
    results: Iterable[Mapping[str, Any]],
    signatures_required: bool,
    day: str = "",
) -> dict[str, Any]:
    """The record's section: ``tests`` as (node id, outcome), ``results`` the gate
    results as the record holds them (``GateResult.to_dict``); ``day`` the day the
    entries were checked on (``YYYY-MM-DD``)."""
    matched_tests = []
    for nodeid, outcome in tests:
        checked = quarantine.for_test(nodeid)
        said = test_outcome(outcome)
        if checked is not None and said is not None:
            matched_tests.append({"nodeid": nodeid, "outcome": said, **_who(checked)})
    matched_gates = []
    for result in results:
        gate, subject = str(result.get("gate")), str(result.get("subject"))
        checked = quarantine.for_gate(gate, subject)
        if checked is None:
            continue
        status = str(result.get("status"))
        matched_gates.append(
            {"gate": gate, "subject": subject, "metric": str(result.get("metric")),
             "status": status, "outcome": gate_outcome(status), **_who(checked)}
        )  # fmt: skip
    entries = sorted(quarantine.entries, key=lambda c: (c.entry.subject, c.id))
    return {
        "file": QUARANTINE_FILE,
        "digest": digest,
        "signatures_required": signatures_required,
        **({"day": day} if day else {}),
        "entries": [c.to_dict() for c in entries],
        "tests": sorted(matched_tests, key=lambda t: t["nodeid"]),
        "gates": sorted(matched_gates, key=lambda g: (g["gate"], g["subject"], g["metric"])),
    }


def excused_among(
    quarantine: Quarantine, pairs: Iterable[tuple[str, str]]
) -> frozenset[tuple[str, str]]:
    """The (gate, subject) pairs among ``pairs`` whose breach a valid entry excuses:
    what a session passes to :func:`~pytest_rtgov.core.verdict.decide`."""
    excused = set()
    for gate, subject in pairs:
        checked = quarantine.for_gate(gate, subject)
        if checked is not None and checked.active:
            excused.add((gate, subject))
    return frozenset(excused)


def quarantine_of(section: Mapping[str, Any]) -> Quarantine:
    """The checked entries a record's section holds, as the session checked them: what
    ``rtgov merge`` judges the merged run's gates with."""
    checked = []
    for e in section.get("entries", ()):
        entry = Entry(
            subject=str(e.get("subject")), owner=str(e.get("owner")),
            reason=str(e.get("reason")), issue=str(e.get("issue")),
            created=str(e.get("created")), expires=str(e.get("expires")),
            evidence=tuple(e.get("evidence", ())),
        )  # fmt: skip
        keyid = e.get("keyid")
        state, detail = str(e.get("state")), str(e.get("detail", ""))
        checked.append(CheckedEntry(entry, str(e.get("id")), state, keyid, detail))
    return Quarantine(tuple(checked))


def merge_sections(sections: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """One section out of the shards' sections (``rtgov merge``): every entry once (an
    entry one shard found not valid stays so), the tests of all shards; no gates (the
    merged run is gated after); no ``day`` (the shards' may differ: the audit keeps the
    merged states); ``{}`` when no shard read a quarantine file."""
    present = [s for s in sections if s]
    if not present:
        return {}
    entries: dict[str, dict[str, Any]] = {}
    for section in present:
        for e in section.get("entries", ()):
            kept = entries.get(str(e.get("id")))
            if kept is None or kept.get("state") == "valid":
                entries[str(e.get("id"))] = dict(e)
    tests = [dict(t) for s in present for t in s.get("tests", ())]
    return {
        "file": QUARANTINE_FILE,
        "digest": str(present[0].get("digest")),
        "signatures_required": any(bool(s.get("signatures_required")) for s in present),
        "entries": sorted(entries.values(), key=lambda e: (str(e.get("subject")), e.get("id"))),
        "tests": sorted(tests, key=lambda t: str(t.get("nodeid"))),
        "gates": [],
    }


def with_gates(section: Mapping[str, Any], results: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """``section`` with its ``gates`` made for ``results`` (a merged run's gate results)."""
    if not section:
        return {}
    built = build_section(
        quarantine_of(section), digest="", tests=(), results=results,
        signatures_required=bool(section.get("signatures_required")),
    )  # fmt: skip
    return {**section, "gates": built["gates"]}


def excused_keep_gates(
    results: Iterable[Any], record: Any, excused: Collection[str]
) -> list[Any]:
    """``results`` (GateResults) where a failure is excused: a failed test is not gated
    (``not-run``), so a quarantined test that fails would take its gates with it. Each
    ``not-run`` result of an excused failing test (``excused``: node ids a valid entry
    covers), and of a fixture whose setup failed, becomes ``missing``, a breach: the
    test's failure is quarantined, its gates are not, unless a gate entry names them.
    Unchanged where no excused test failed (a session, ``rtgov merge`` and ``rtgov
    audit`` call this after ``evaluate_gates``)."""
    from dataclasses import replace

    from pytest_rtgov.core.subjects import subject_id

    failed = {t.nodeid for t in record.tests if t.outcome in _FAILED and t.nodeid in excused}
    if not failed:
        return list(results)
    failed |= {
        subject_id(f) for f in record.fixtures if any(s.outcome != "passed" for s in f.setups)
    }
    why = "its failure is quarantined, not its gates (a gate:NAME[:SUBJECT] entry excuses them)"
    return [
        replace(r, status="missing", reason=f"{r.reason}; {why}")
        if r.status == "not-run" and r.subject in failed
        else r
        for r in results
    ]


def audited_quarantine(section: Mapping[str, Any], started_at: str) -> Quarantine:
    """The entries of a record's section as ``rtgov audit`` trusts them: each signature
    state as recorded (the file's bytes are not kept); each date state re-checked on the
    ``day`` the section says the session checked them (not before the day the run started,
    ``started_at``, where signatures were required: a session there refuses an earlier
    day). A section without a day (a merged run's: its shards may have checked on
    different days) keeps its recorded date states. The audit then re-matches every test
    and gate result against these, never reading the recorded matches: a section that
    excuses what its entries do not cover does not re-derive."""
    from dataclasses import replace

    if not section:
        return Quarantine()
    checked = quarantine_of(section).entries
    if not section.get("day"):
        return Quarantine(tuple(checked))
    day, started = str(section.get("day")), started_at[:10]
    if section.get("signatures_required") and day < started:
        day = started
    on = parse_day(day, "quarantine.day")
    dated = [
        replace(c, state=c.entry.state_on(on), detail=c.entry.expiry_detail(on))
        if c.state in ("valid", "expired")
        else c
        for c in checked
    ]
    return Quarantine(tuple(dated))


def active_tests(quarantine: Quarantine, nodeids: Iterable[str]) -> frozenset[str]:
    """The node ids among ``nodeids`` a valid entry covers."""
    found = set()
    for nodeid in nodeids:
        checked = quarantine.for_test(nodeid)
        if checked is not None and checked.active:
            found.add(nodeid)
    return frozenset(found)


def _states(section: Mapping[str, Any]) -> dict[str, str]:
    return {str(e.get("id")): str(e.get("state")) for e in section.get("entries", ())}


def excused_tests(section: Mapping[str, Any]) -> frozenset[str]:
    """The node ids whose failure a valid entry excuses."""
    states = _states(section)
    return frozenset(
        str(t.get("nodeid"))
        for t in section.get("tests", ())
        if states.get(str(t.get("entry"))) == "valid"
    )


def excused_gates(section: Mapping[str, Any]) -> frozenset[tuple[str, str]]:
    """The (gate, subject) pairs whose breach a valid entry excuses."""
    states = _states(section)
    return frozenset(
        (str(g.get("gate")), str(g.get("subject")))
        for g in section.get("gates", ())
        if states.get(str(g.get("entry"))) == "valid"
    )


def _named(entry: Mapping[str, Any]) -> str:
    return (
        f"quarantine entry {entry.get('subject')} (owner {entry.get('owner')}, issue "
        f"{entry.get('issue')}, id {str(entry.get('id'))[:19]})"
    )


def session_problems(section: Mapping[str, Any], *, exit_status: int) -> tuple[int, list[str]]:
    """The exit status the entries that excuse nothing call for, and the lines that say
    why. An expired entry naming a test or gate of this session makes a passing session
    6; where signatures were required an unsigned, untrusted or tampered entry makes any
    session 7; elsewhere they are warnings (they excuse nothing)."""
    if not section:
        return exit_status, []
    status = exit_status
    lines: list[str] = []
    used = {str(m.get("entry")) for m in (*section.get("tests", ()), *section.get("gates", ()))}
    required = bool(section.get("signatures_required"))
    for entry in section.get("entries", ()):
        state, name = entry.get("state"), _named(entry)
        if state == "expired" and entry.get("id") in used:
            lines.append(
                f"{name} {entry.get('detail') or 'expired'}: it excuses nothing and fails "
                f"the session; renew it with a new reason (`rtgov quarantine renew "
                f"{entry.get('subject')} --reason TEXT --expires YYYY-MM-DD`) or remove it"
            )
            if status == ExitCode.OK:
                status = int(ExitCode.GATE_BREACHED)
        elif state == "expired":
            lines.append(f"warning: {name} {entry.get('detail') or 'expired'} (no test or "
                         "gate of this session uses it): renew or remove it")  # fmt: skip
        elif state in UNTRUSTED_STATES and required:
            lines.append(
                f"{name} is {state} ({entry.get('detail')}): refused where signatures are "
                "required (CI=true or --rtgov-require-signature); remove it and add it "
                "anew, signed by a keyring key (`rtgov quarantine remove`, then `add`)"
            )
            status = int(ExitCode.INTEGRITY)
        elif state in UNTRUSTED_STATES:
            lines.append(
                f"warning: {name} is {state} ({entry.get('detail')}): it excuses nothing "
                "here, and fails a session where signatures are required (CI=true)"
            )
    return status, lines
