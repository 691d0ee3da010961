"""The session's gatekeeper: load gates and baseline, evaluate, decide, then write.

In ``pytest_sessionfinish`` on the controller, :meth:`Gatekeeper.decide` evaluates the
gates and asks :func:`pytest_rtgov.core.verdict.decide` for the verdict (nothing is
written); :meth:`Gatekeeper.write_baseline` then writes the baseline the verdict names.
Both happen before the record is written and the terminal summary prints a line of it.

What a session may write (docs/gates.md, "Who writes the baseline"):

- the committed baseline only when asked (``--rtgov-update-baseline``,
  ``--rtgov-bootstrap-baseline``), or when none exists and the ledger never recorded
  one (a new project's first local run);
- a fingerprint the committed baseline lacks: this machine's measurements go to the
  state directory (``baseline-local/``), locally only; with signatures required (CI)
  the session fails instead, unless ``--rtgov-bootstrap-baseline``;
- never a baseline whose seal fails: only ``rtgov baseline sign|refresh --reason``
  re-seals it, and the ledger records what failed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from pytest_rtgov.core.fingerprint import fingerprint
from pytest_rtgov.core.gates import evaluate_gates
from pytest_rtgov.core.gates_config import GatesConfig, GatesConfigError
from pytest_rtgov.core.records import RunRecord
from pytest_rtgov.core.verdict import GateResult, Verdict, decide
from pytest_rtgov.errors import RecordFormatError
from pytest_rtgov.logs import log_event
from pytest_rtgov.store.baselines import BaselineStore
from pytest_rtgov.store.gates_file import check_paths, load_gates

__all__ = ["LOCAL_BASELINE", "Gatekeeper"]

LOCAL_BASELINE = "baseline-local"  # under the state directory: this machine's measurements
RESEAL_HINT = (
    "a session never re-seals a baseline whose seal fails: review the files, then re-seal "
    "them with `rtgov baseline sign --reason TEXT` (or `rtgov baseline refresh --reason "
    "TEXT`), which records what failed in the ledger"
)


class Gatekeeper:
    def __init__(
        self,
        gates: GatesConfig,
        baseline_dir: Path,
        *,
        rootdir: Path,
        update: bool,
        require_baseline: bool,
        reason: str | None,
        bootstrap: bool = False,
        state_dir: Path | None = None,
    ) -> None:
        self.gates = gates
        self.state_dir = state_dir
        self.store = BaselineStore(
            baseline_dir, local_dir=state_dir / LOCAL_BASELINE if state_dir else None
        )
        self.rootdir = rootdir
        self.update = update
        self.require_baseline = require_baseline
        self.bootstrap = bootstrap
        self.reason = reason
        self.ab_ref = gates.ab_ref
        # Set by the session plugin: who signs the baseline, who is trusted, and the
        # ledger leaves of baseline changes made by this session.
        self.signing: Any = None
        self.trust: Any = None
        self.ledger_leaves: list[bytes] = []
        # What write_baseline will write, decided by decide: (state, store) or None.
        self._plan: tuple[str, BaselineStore] | None = None
        self.ab_says: str | None = None  # which code A/B gates compare against (prepare_ab)
        self.ab_choice: Any = None  # its store.ab_ref.AbChoice (what an update accepts)
        self.code_snapshot: str | None = None  # an update's measured code (baseline_write)
        # The gates file's bytes as parsed, and the digests of the inputs a decision used
        # (kept in the object store for `rtgov audit`; store/audit.py): the record's inputs.
        self.gates_bytes: bytes | None = None
        self.inputs: dict[str, str] = {}
        # The checked quarantine entries (core.quarantine.Quarantine), set by
        # plugin/quarantine.py: a valid gate entry's breach does not count in the verdict.
        self.quarantine: Any = None

    @classmethod
    def from_config(cls, config: pytest.Config) -> Gatekeeper:
        """Load and validate the gates file before any test runs (usage error: exit 4)."""
        from pytest_rtgov.store.paths import Paths

        rootdir = Path(config.rootpath)
        where = Paths.resolve(
            invocation=Path(config.invocation_params.dir),
            rootdir=rootdir,
            state_dir=config.getoption("rtgov_dir"),
            gates=config.getoption("rtgov_gates"),
        )
        path = where.gates_file
        registered = {line.split(":")[0].split("(")[0].strip() for line in config.getini("markers")}
        registered |= {"parametrize", "skip", "skipif", "xfail", "usefixtures", "filterwarnings"}
        try:
            gates = load_gates(path)
            check_paths(gates, rootdir, registered)
        except GatesConfigError as exc:
            raise pytest.UsageError(str(exc)) from None
        update = bool(config.getoption("rtgov_update_baseline"))
        reason = config.getoption("rtgov_reason")
        ab_ref = config.getoption("rtgov_ab_ref")
        if update and not reason and os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            raise pytest.UsageError(
                "--rtgov-update-baseline with CI=true needs --rtgov-reason TEXT: "
                "a baseline refresh in CI must say why"
            )
        bootstrap = bool(config.getoption("rtgov_bootstrap_baseline", False))
        require_baseline = bool(config.getoption("rtgov_require_baseline"))
        if bootstrap and require_baseline:
            raise pytest.UsageError(
                "--rtgov-bootstrap-baseline and --rtgov-require-baseline contradict each other"
            )
        keeper = cls(
            gates,
            where.baseline_dir(gates),  # inside the project: check_paths said so above
            rootdir=rootdir,
            update=update,
            require_baseline=require_baseline,
            reason=reason,
            bootstrap=bootstrap,
            state_dir=where.state_dir,
        )
        if ab_ref:
            keeper.ab_ref = ab_ref
        try:
            keeper.gates_bytes = path.read_bytes()  # parsed just above: what audit re-parses
        except OSError:
            keeper.gates_bytes = None
        return keeper

    def default_rounds(self) -> dict[str, Any] | None:
        """``[defaults] rounds`` for tests that measurement gates select (no marker)."""
        if self.gates.rounds is None:
            return None
        measured = [g for g in self.gates.gates if g.builtin]
        return {
            "rounds": self.gates.rounds,
            "tests": sorted({t for g in measured for t in g.tests}),
            "markers": sorted({m for g in measured for m in g.markers}),
        }

    def prepare_ab(self, dest: Path) -> dict[str, Any] | None:
        """Export the A/B baseline code when a gate asks for it (before any test runs)."""
        ab_gates = self.gates.ab_gates
        if not ab_gates:
            return None
        from pytest_rtgov.store.ab_code import AbCodeError, export_ref
        from pytest_rtgov.store.ab_ref import resolve_ab_ref

        try:
            choice = resolve_ab_ref(self.rootdir, self.ab_ref)
            self.ab_ref, self.ab_choice = choice.ref, choice
            sha, root = export_ref(self.rootdir, self.ab_ref, dest)
        except AbCodeError as exc:
            raise pytest.UsageError(str(exc)) from None
        self.ab_says = choice.says(sha)  # in the verdict's notes: which code was compared
        if self.update:  # the code measured from now on is the code the update accepts
            from pytest_rtgov.plugin.baseline_write import snapshot_measured_code

            self.code_snapshot = snapshot_measured_code(self)
        log_event(
            "ab.prepared", ref=self.ab_ref, sha=sha, root=str(root), chosen=choice.how,
            says=self.ab_says,
        )
        return {
            "root": str(root),
            "sha": sha,
            "ref": self.ab_ref,
            "chosen": choice.how,
            "says": self.ab_says,
            "tests": sorted({t for g in ab_gates for t in g.tests}),
            "markers": sorted({m for g in ab_gates for m in g.markers}),
            "pairs": self.gates.ab_pairs,
            "confirm": self.gates.confirm,
            # the sequential rule's plan (plugin/ab.py, core/sequential.py)
            "max_pairs": self.gates.ab_max_pairs,
            "max_seconds": self.gates.ab_max_seconds,
            "confidence": self.gates.confidence,
            "min_samples": self.gates.min_samples,
            "metrics": sorted({g.metric for g in ab_gates}),
            "regression_gates": sum(g.builtin and g.has_regression_rule for g in self.gates.gates),
            "min_pct": min(
                (g.max_regression_pct for g in ab_gates if g.max_regression_pct is not None),
                default=None,
            ),
            "min_abs": min(
                (g.max_regression for g in ab_gates if g.max_regression is not None),
                default=None,
            ),
        }

    def _missing(self, required: bool, tests_ok: bool) -> Verdict | None:
        """A baseline that is not there: an error where the ledger recorded one; in CI a
        failure unless bootstrapping was asked for; else None (created by this run)."""
        if self.store.exists() or self.bootstrap:
            return None
        from pytest_rtgov.store.baselines import ledger_record_of

        directory = self.store.directory
        known = ledger_record_of(directory, self.state_dir) if self.state_dir else None
        if known is not None:
            assert self.state_dir is not None
            note = (
                f"baseline {directory} is missing, but the ledger "
                f"{self.state_dir / 'ledger' / 'log'} recorded it (leaf {known['index']}, "
                f"{known.get('at', '?')}, by {known.get('who', '?')}): restore it (e.g. "
                f"`git checkout -- {directory}`) or pass --rtgov-bootstrap-baseline to "
                "record a new one from this run"
            )
            log_event("baseline.vanished", level=40, baseline=str(directory))
            return decide((), tests_exit_status=0, baseline="untrusted", notes=[note])
        if required and tests_ok:
            note = (
                f"no baseline in {directory}: with signatures required (CI=true or "
                "--rtgov-require-signature) a session never creates one from its own run; "
                "pass --rtgov-bootstrap-baseline to record this run as the baseline (then "
                "review and commit it)"
            )
            return decide((), tests_exit_status=0, baseline="absent", notes=[note])
        return None

    @staticmethod
    def _untrusted(notes: list[str]) -> Verdict:
        log_event("baseline.seal_failed", level=40, notes=notes)
        return decide((), tests_exit_status=0, baseline="untrusted", notes=notes)

    def decide(self, record: RunRecord, exitstatus: int) -> Verdict:
        """Evaluate every gate and decide (:func:`pytest_rtgov.core.verdict.decide`);
        nothing is written. What the baseline step will do is part of the decision;
        :meth:`write_baseline` does it, after."""
        from pytest_rtgov.core.provenance import baseline_comparability_notes
        from pytest_rtgov.store.baselines import baseline_seal_status

        self._plan = None
        self.inputs = {}
        if self.state_dir is not None and self.gates_bytes is not None:
            from pytest_rtgov.store.audit import keep_gates

            self.inputs = keep_gates(self.state_dir, self.gates_bytes)
        status = baseline_seal_status(self.store, self.trust, state_dir=self.state_dir)
        if status.stop:
            return self._untrusted(status.notes)
        seal_notes = list(status.notes)
        if status.unrecorded is not None and self.signing is not None and self.state_dir:
            # A valid seal made elsewhere (a refresh that came through git): record it,
            # so that putting back the seal before it is a rollback here too.
            from pytest_rtgov.store.baselines import adoption_leaf

            self.ledger_leaves.append(
                adoption_leaf(self.store, self.state_dir, status.unrecorded)
            )
            log_event("baseline.seal_recorded", baseline=str(self.store.directory))
        required = bool(self.trust is not None and self.trust.required)
        tests_ok = exitstatus == 0
        missing = self._missing(required, tests_ok)
        if missing is not None:
            return missing
        local = None if required else self.store.local
        if local is not None and local.has_fingerprint(record.environment):
            # Signed by the local key by design: only a seal that fails is worth a note.
            local_status = baseline_seal_status(
                local, self.trust, what="local baseline", state_dir=self.state_dir
            )
            if local_status.stop:  # an older local baseline put back
                return self._untrusted(local_status.notes)
            if local_status.failure is not None:
                seal_notes += local_status.notes
        try:
            view = self.store.view(record.environment, local=local is not None)
        except RecordFormatError as exc:
            notes = [f"baseline: {exc}"]
            return decide((), tests_exit_status=exitstatus, baseline="unreadable", notes=notes)
        if self.inputs and self.state_dir is not None:  # judged against, before any write
            from pytest_rtgov.store.audit import keep_baseline

            where, env = self.state_dir, record.environment
            self.inputs |= keep_baseline(where, self.store, env, local=local is not None)
        results, empty = evaluate_gates(self.gates, record, view)
        if self.quarantine is not None:  # an excused failure keeps its gates (as missing)
            from pytest_rtgov.plugin.quarantine import keep_excused_gates

            results = keep_excused_gates(self.quarantine, record, results)
        incomparable = baseline_comparability_notes(record, view.metrics)
        if incomparable:
            log_event("gate.incomparable", reasons=incomparable)
        notes = seal_notes + incomparable + ([self.ab_says] if self.ab_says else [])
        notes += [
            f"gate {name!r} selected no test or fixture in this session ({self.gates.source})"
            for name in empty
        ]
        state = self._baseline_state(record, results, notes, tests_ok, status.failure, local)
        if view.fingerprint_note and state == "present":
            if not self.store.has_fingerprint(record.environment):
                notes.append(view.fingerprint_note)
        from pytest_rtgov.plugin.quarantine import excused_gates_of

        verdict = decide(
            results, tests_exit_status=exitstatus, baseline=state, notes=notes,
            quarantined=excused_gates_of(self.quarantine, results),
        )  # fmt: skip
        log_event(
            "gate.verdict",
            status=verdict.status,
            exit_status=verdict.exit_status,
            breaches=len(verdict.breaches) if state != "update" else 0,
            gates=len(results),
            baseline_action=verdict.baseline_action,
        )
        return verdict

    def _baseline_state(
        self,
        record: RunRecord,
        results: list[GateResult],
        notes: list[str],
        tests_ok: bool,
        seal_failure: str | None,
        local: BaselineStore | None,
    ) -> str:
        """What the baseline step will do (a state of ``core.verdict.BASELINE_STATES``);
        remembers the write it plans for :meth:`write_baseline`; adds its notes."""
        from pytest_rtgov.store.baselines import baseline_seal_status

        fp = fingerprint(record.environment)
        first_on_fingerprint = not self.store.has_fingerprint(record.environment)
        measured_locally = local is not None and local.has_fingerprint(record.environment)

        def refuse(what: str, failure: str) -> str:
            log_event("baseline.reseal_refused", level=40, baseline=what, failure=failure)
            notes.append(f"{what}: its seal fails ({failure}); {RESEAL_HINT}")
            return "untrusted"

        if self.update:
            if not tests_ok:
                notes.append("tests failed: the baseline was not updated")
                return "present"
            if seal_failure is not None:
                return refuse(f"baseline {self.store.directory}", seal_failure)
            self._plan = ("update", self.store)
            return "update"
        if not first_on_fingerprint or measured_locally or not tests_ok:
            return "present"
        if any(r.breached for r in results):
            return "present"
        if self.require_baseline:
            notes.append(f"no baseline for fingerprint {fp} and --rtgov-require-baseline is set")
            return "absent"
        if seal_failure is not None:
            return refuse(f"baseline {self.store.directory}", seal_failure)
        if not self.store.exists() or self.bootstrap:
            self._plan = ("create", self.store)
            return "create"
        if (self.trust is not None and self.trust.required) or local is None:
            notes.append(
                f"no measurement baseline for fingerprint {fp} in {self.store.directory}: "
                "with signatures required (CI=true or --rtgov-require-signature) a "
                "session never records one from its own run; pass "
                "--rtgov-bootstrap-baseline to add this run's measurements (then review "
                "and commit them)"
            )
            return "absent"
        local_status = baseline_seal_status(local, self.trust, what="local baseline")
        if local_status.failure is not None:
            return refuse(f"local baseline {local.directory}", local_status.failure)
        self._plan = ("create-local", local)
        return "create-local"

    def write_baseline(self, verdict: Verdict, record: RunRecord) -> Verdict:
        """The step after the decision: write (and seal) the baseline the verdict's
        ``baseline_action`` names (:mod:`pytest_rtgov.plugin.baseline_write`)."""
        from pytest_rtgov.plugin.baseline_write import write_baseline

        plan, self._plan = self._plan, None
        if plan is None or verdict.baseline_action is None:
            return verdict
        return write_baseline(self, plan, verdict, record)
