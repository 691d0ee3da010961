"""Options and settings: the session's resolved settings, checked before any test runs.

:func:`resolve` reads the options (and, in an xdist worker, ``workerinput``) once, in
``pytest_configure``, and stores a :class:`Settings` in ``config.stash[SETTINGS_KEY]``;
every other role plugin reads it from there. Whatever a user can get wrong (the state
directory, the gates file, the keys, the export specs, the log file) is a usage error
(exit 4) here, before any test runs.

This module is imported by the entry point's fixture: it imports nothing heavy at
module level.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_rtgov.plugin.capture import Capture
    from pytest_rtgov.plugin.finish import SessionOutcome
    from pytest_rtgov.plugin.samples import Collector
    from pytest_rtgov.store.paths import Paths

__all__ = [
    "CAPTURE_KEY",
    "COLLECTOR_KEY",
    "MAIN_WORKER",
    "OUTCOME_KEY",
    "SETTINGS_KEY",
    "Settings",
    "resolve",
]

MAIN_WORKER = "main"


@dataclass(slots=True)
class Settings:
    """What this process was asked to do, resolved from the options once."""

    mode: str  # "record" (--rtgov) or "gate" (--rtgov-gate)
    state_dir: Path
    memory_mode: str
    run_id: str
    worker: str  # MAIN_WORKER, or the xdist worker id (gw0, ...)
    is_worker: bool
    rootdir: Path
    invocation_dir: Path
    paths: Paths  # store.paths: the state directory, gates file and keyring, resolved
    gatekeeper: Any = None  # plugin.gating.Gatekeeper: the controller of a gated session
    # Same-process A/B: {"root", "sha", "ref", "tests", "markers", "pairs", ...} or None.
    ab: dict[str, Any] | None = None
    calibrate: bool = False
    # Default rounds of gated tests without a marker: {"rounds", "tests", "markers"}.
    default_rounds: dict[str, Any] | None = None
    # What the auto memory mode measures precisely: the peak_memory gates' selection
    # {"tests", "markers", "fixtures"} (plugin/memory_select.py), or None.
    memory_select: dict[str, list[str]] | None = None
    record_markers: bool = False  # where gates may select by marker: gated runs, shards
    export_specs: list[tuple[str, Path]] = field(default_factory=list)
    interactive: bool = False  # progress bars: asked before pytest's capture starts
    github_actions: bool = False
    key_plan: Any = None  # store.keys plan: checked now, loaded when first used
    loaded_keys: tuple[Any, Any] | None = None
    log_handler: logging.Handler | None = None

    def keys(self) -> tuple[Any, Any]:
        if self.loaded_keys is None:
            assert self.key_plan is not None, "resolve() plans the keys"
            self.loaded_keys = self.key_plan.load()
        return self.loaded_keys

    @property
    def signing(self) -> Any:
        """The session's :class:`~pytest_rtgov.store.keys.SigningKey`, loaded on first use."""
        return self.keys()[0]

    @property
    def trust(self) -> Any:
        """The session's :class:`~pytest_rtgov.store.keys.Trust`, loaded on first use."""
        return self.keys()[1]

    def close(self) -> None:
        if self.log_handler is not None:
            logging.getLogger("pytest_rtgov").removeHandler(self.log_handler)
            self.log_handler.close()
            self.log_handler = None


SETTINGS_KEY = pytest.StashKey[Settings]()
CAPTURE_KEY: pytest.StashKey[Capture] = pytest.StashKey()
COLLECTOR_KEY: pytest.StashKey[Collector] = pytest.StashKey()
OUTCOME_KEY: pytest.StashKey[SessionOutcome] = pytest.StashKey()


def resolve(config: pytest.Config) -> Settings:
    """Check every option and build this process's settings (usage errors: exit 4)."""
    from pytest_rtgov.logs import add_json_lines_handler
    from pytest_rtgov.store.ledger import LedgerError, lock_timeout
    from pytest_rtgov.store.paths import Paths
    from pytest_rtgov.store.runs import new_run_id

    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    invocation = Path(config.invocation_params.dir)
    paths = Paths.resolve(
        invocation=invocation,
        rootdir=Path(config.rootpath),
        state_dir=config.getoption("rtgov_dir"),
        gates=config.getoption("rtgov_gates"),
        keyring=config.getoption("rtgov_keyring"),
    )
    state_dir = paths.state_dir
    if not workerinput:  # workers write nothing there that the controller did not check
        _check_state_dir(state_dir)
    settings = Settings(
        mode="gate" if config.getoption("rtgov_gate") else "record",
        state_dir=state_dir,
        memory_mode=config.getoption("rtgov_memory"),
        run_id=(workerinput or {}).get("rtgov_run_id") or new_run_id(),
        worker=workerinput["workerid"] if workerinput else MAIN_WORKER,
        is_worker=workerinput is not None,
        rootdir=Path(config.rootpath),
        invocation_dir=invocation,
        paths=paths,
        github_actions=os.environ.get("GITHUB_ACTIONS") == "true",
    )
    _check_one_memray_tracker(config, settings.memory_mode)
    _check_stage_store(config, state_dir)
    # Markers are kept where gates may select by them: gated runs and shards.
    settings.record_markers = settings.mode == "gate" or (
        workerinput is not None and bool(config.getoption("rtgov_shard"))
    )
    try:  # checked before the tests, used after them
        lock_timeout(config.getoption("rtgov_ledger_timeout"))
    except LedgerError as exc:
        raise pytest.UsageError(str(exc)) from None
    log_path = config.getoption("rtgov_log_json")
    if log_path and not settings.is_worker:  # first: the events of the checks below go there too
        try:
            settings.log_handler = add_json_lines_handler(Path(log_path))
        except OSError as exc:
            raise pytest.UsageError(
                f"--rtgov-log-json: cannot open {log_path}: {exc.strerror or exc}"
            ) from None
    try:
        _resolve_roles(config, settings, workerinput)
    except BaseException:
        settings.close()  # never stashed: pytest_unconfigure would not close the log file
        raise
    return settings


def _resolve_roles(
    config: pytest.Config, settings: Settings, workerinput: dict[str, Any] | None
) -> None:
    """What this process measures and gates: A/B code, keys, calibration, exports."""
    from pytest_rtgov.errors import RtgovError
    from pytest_rtgov.plugin.progress import wants_progress

    if workerinput is not None:
        settings.key_plan = _plan_keys(config, settings)
        settings.ab = workerinput.get("rtgov_ab")
        settings.calibrate = bool(workerinput.get("rtgov_calibrate"))
        settings.default_rounds = workerinput.get("rtgov_default_rounds")
        settings.memory_select = workerinput.get("rtgov_memory_select")
    elif settings.mode == "gate":
        from pytest_rtgov.plugin.gating import Gatekeeper

        keeper = settings.gatekeeper = Gatekeeper.from_config(config)
        settings.key_plan = _plan_keys(config, settings)
        try:  # loaded now: a bad key is exit 4 before the tests (the seal is checked at the end)
            keeper.signing, keeper.trust = settings.signing, settings.trust
        except RtgovError as exc:
            raise pytest.UsageError(str(exc)) from None
        _measure_like_the_gate(keeper, settings)
    else:
        settings.key_plan = _plan_keys(config, settings)
        if config.getoption("rtgov_shard") is not None:
            _measure_like_a_gated_shard(config, settings)
        elif settings.memory_mode == "auto":  # precise memory where a later gate would judge
            from pytest_rtgov.plugin.memory_select import selection_of_file

            settings.memory_select = selection_of_file(settings.paths.gates_file)
    settings.calibrate = settings.calibrate or bool(config.getoption("rtgov_calibrate"))
    if not settings.is_worker:
        settings.export_specs = _export_specs(config)
    # Whether the terminal is interactive, asked now: once tests run, pytest's fd
    # capture makes stdout a temporary file.
    settings.interactive = wants_progress(config, is_worker=settings.is_worker)


def _measure_like_the_gate(keeper: Any, settings: Settings) -> None:
    """The A/B code, calibration and default rounds the gates ask for."""
    settings.ab = keeper.prepare_ab(settings.state_dir / "ab")
    settings.calibrate = keeper.gates.calibrated
    settings.default_rounds = keeper.default_rounds()
    from pytest_rtgov.plugin.memory_select import memory_selection

    settings.memory_select = memory_selection(keeper.gates)


def _measure_like_a_gated_shard(config: pytest.Config, settings: Settings) -> None:
    """A shard (``--rtgov --rtgov-shard``) is gated later, by ``rtgov merge --gate``:
    measure as ``--rtgov-gate`` would (A/B pairs, default rounds, calibration,
    markers), so that the merged run gates like an unsharded one."""
    from pytest_rtgov.plugin.gating import Gatekeeper

    if not settings.paths.gates_file.is_file():
        return
    _measure_like_the_gate(Gatekeeper.from_config(config), settings)
    settings.record_markers = True
    if settings.ab is not None:  # no verdict here to note it in: say it now
        import sys

        sys.stderr.write(f"pytest-rtgov: {settings.ab['says']}\n")


def _plan_keys(config: pytest.Config, settings: Settings) -> Any:
    """Check the signing key and the keyring before any test runs; refuse an
    untrusted key where signatures are required (``--rtgov-require-signature`` or
    ``CI=true``). The keys themselves (and cryptography) are loaded when first
    used, after the tests in a recording session (see ``core.keys``)."""
    from pytest_rtgov.errors import RtgovError
    from pytest_rtgov.store.keys import plan_keys, require_signatures

    key_option = config.getoption("rtgov_signing_key")
    try:
        return plan_keys(
            key_file=settings.invocation_dir / key_option if key_option else None,
            keyring=settings.paths.keyring,
            state_dir=settings.state_dir,
            required=require_signatures(bool(config.getoption("rtgov_require_signature"))),
        )
    except RtgovError as exc:
        raise pytest.UsageError(str(exc)) from None


def _check_one_memray_tracker(config: pytest.Config, memory_mode: str) -> None:
    """memray allows one Tracker per process: pytest-memray's ``--memray`` holds one
    around every test, rtgov's memray mode one around every region. Together each
    test would fail ("No more than one Tracker instance can be active"): a usage
    error now, before any test runs. pytest-memray installed but not activated is fine."""
    if memory_mode != "memray" or not config.pluginmanager.hasplugin("memray"):
        return
    if config.getoption("memray", default=False):
        raise pytest.UsageError(
            "pytest-rtgov: pytest-memray's --memray and --rtgov-memory memray cannot both "
            "hold a memray Tracker (memray allows one per process): drop --memray to keep "
            "rtgov's per-test memray captures, or choose another --rtgov-memory mode "
            "(tracemalloc, rss) to keep pytest-memray's"
        )


def _check_stage_store(config: pytest.Config, state_dir: Path) -> None:
    """An fsspec ``--rtgov-stage-store`` whose driver is missing (the ``remote`` extra):
    a usage error naming it, before any test. Opening it reaches no network."""
    from pytest_rtgov.errors import RtgovError
    from pytest_rtgov.store.stage_cache import open_backend

    try:
        open_backend(str(config.getoption("rtgov_stage_store", None) or ""), state_dir=state_dir)
    except RtgovError as exc:
        raise pytest.UsageError(f"pytest-rtgov: --rtgov-stage-store: {exc}") from None


def _check_state_dir(state_dir: Path) -> None:
    """Before any test runs: create the state directory, and write (then remove) a small
    file in ``runs/`` and ``ledger/``, so that a directory that is a file, read-only or
    full is a usage error (exit 4) now, not a lost record after the whole session.

    A probe write rather than ``os.access``: root passes any permission check, and
    only a write finds a full disk or a read-only mount."""
    import tempfile

    if state_dir.exists() and not state_dir.is_dir():
        raise pytest.UsageError(
            f"pytest-rtgov: state directory {state_dir} is not usable: it is a file, "
            "not a directory (choose another with --rtgov-dir DIR)"
        )
    from pytest_rtgov.store.files import symlinks_inside

    links = symlinks_inside(state_dir) if state_dir.is_dir() else []
    if links:
        raise pytest.UsageError(
            f"pytest-rtgov: state directory {state_dir} is not usable: {links[0]} is a "
            f"symbolic link (to {os.readlink(links[0])}); rtgov writes only plain files and "
            "folders there, and a link would carry its writes elsewhere: replace it"
            + (f" ({len(links) - 1} more)" if len(links) > 1 else "")
        )
    from pytest_rtgov.store.paths import create_state_dir

    for directory in (state_dir / "runs", state_dir / "ledger"):
        try:
            create_state_dir(state_dir)  # a new one with its .gitignore: never committed
            directory.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".rtgov-probe-", dir=directory)
            try:
                os.write(fd, b"rtgov\n")
            finally:
                os.close(fd)
                os.unlink(probe)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            if isinstance(exc, (FileExistsError, NotADirectoryError)):
                reason = "not a directory"
            raise pytest.UsageError(
                f"pytest-rtgov: state directory {state_dir} is not usable: cannot write a file "
                f"in {directory}: {reason} (choose another with --rtgov-dir DIR)"
            ) from None


def _export_specs(config: pytest.Config) -> list[tuple[str, Path]]:
    """``--rtgov-export FORMAT:PATH`` values, checked before any test runs (exit 4)."""
    from pytest_rtgov.core.constants import EXPORT_FORMATS as FORMATS
    from pytest_rtgov.errors import RtgovError
    from pytest_rtgov.report.export.needs import require_format

    specs = []
    for value in config.getoption("rtgov_export") or []:
        fmt, sep, path = str(value).partition(":")
        if not sep or fmt not in FORMATS or not path:
            raise pytest.UsageError(
                f"invalid value for --rtgov-export, expected FORMAT:PATH with FORMAT one of "
                f"{', '.join(FORMATS)} (not {value!r})"
            )
        try:  # an extra it needs is missing: a usage error naming it, before any test
            require_format(fmt)
        except RtgovError as exc:
            raise pytest.UsageError(f"pytest-rtgov: --rtgov-export {value}: {exc}") from None
        target = Path(path)
        if not target.is_absolute():
            target = Path(config.invocation_params.dir) / target
        specs.append((fmt, target))
    return specs
