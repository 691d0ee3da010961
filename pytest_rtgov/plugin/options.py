"""The ``--rtgov*`` options and their ini keys: one table, added to pytest's parser, merged
once per process, shown in the header and rendered into docs/usage.md.

Every option ``--rtgov-x-y`` is also the ini key ``rtgov_x_y`` (``[tool.pytest.ini_options]``,
``pytest.ini``, ``tox.ini``, ``setup.cfg``; pytest's ``addini``). The options are added
with ``default=None``, so that :func:`merge_ini` can tell an option given on the command
line (or in ``addopts``) from one that was not: the command line wins over the ini key,
the ini key over the default. A path in an ini key is relative to the config file's
directory (as pytest's own ``paths`` keys are); a path given as an option stays relative
to the directory pytest was invoked from.

Imported by the entry point in every session: it imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from pytest_rtgov.core.constants import DEFAULT_MEMORY_MODE, MEMORY_MODES

__all__ = [
    "INI_TABLE_BEGIN",
    "INI_TABLE_END",
    "OPTIONS",
    "Option",
    "RtgovOptionWarning",
    "add_options",
    "header_line",
    "ignored_options",
    "merge_ini",
    "render_ini_table",
    "warn_ignored_options",
]


class RtgovOptionWarning(pytest.PytestWarning):
    """``--rtgov-*`` options given where nothing is measured (no ``--rtgov``/``--rtgov-gate``)."""


@dataclass(frozen=True)
class Option:
    """One ``--rtgov*`` option and its ini key (the option's ``dest``)."""

    flag: str
    help: str
    default: Any = None
    ini: Literal["bool", "string", "linelist"] = "string"  # pytest's addini type
    path: bool = False  # an ini value is a path, relative to the config file's directory
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    number: bool = False  # a float (--rtgov-ledger-timeout)
    shown_default: str = ""  # the default as docs/usage.md's ini table writes it
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The ini key, also the option's ``dest``: ``--rtgov-dir`` -> ``rtgov_dir``."""
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def switch(self) -> bool:
        return self.ini == "bool"


OPTIONS: tuple[Option, ...] = (
    Option("--rtgov", "measure every test and fixture setup and write a run record.",
           default=False, ini="bool", shown_default="false"),
    Option("--rtgov-gate",
           "like --rtgov, then gate the results against the baseline (gates.toml).",
           default=False, ini="bool", shown_default="false"),
    Option("--rtgov-dir", "state directory for run records and captures (default: .rtgov).",
           default=".rtgov", path=True, metavar="DIR", shown_default="`.rtgov`"),
    Option("--rtgov-memory",
           f"how peak memory is measured (default: {DEFAULT_MEMORY_MODE}: precisely for what "
           "a peak_memory gate or memory=True marker selects, the resident set elsewhere).",
           default=DEFAULT_MEMORY_MODE, choices=MEMORY_MODES,
           shown_default=f"`{DEFAULT_MEMORY_MODE}`"),
    Option("--rtgov-allocator",
           "pinned (default): glibc's mmap threshold fixed while measuring, so a kernel's "
           "large temporaries cost the same whatever ran before; system: leave it dynamic.",
           default="pinned", choices=("pinned", "system"), shown_default="`pinned`"),
    Option("--rtgov-gates", "gates file (default: gates.toml in the rootdir).",
           path=True, metavar="PATH", shown_default="`gates.toml` in the rootdir"),
    Option("--rtgov-update-baseline",
           "with --rtgov-gate: refresh the baseline from this run's passed subjects.",
           default=False, ini="bool", shown_default="false"),
    Option("--rtgov-require-baseline",
           "with --rtgov-gate: fail when there is no baseline to compare with (for CI).",
           default=False, ini="bool", shown_default="false"),
    Option("--rtgov-bootstrap-baseline",
           "with --rtgov-gate: record this run as the baseline where there is none, or add "
           "this machine's measurements to the committed baseline (needed with CI=true, or "
           "when the ledger recorded a baseline that is gone).",
           default=False, ini="bool", shown_default="false"),
    Option("--rtgov-reason",
           "why the baseline is refreshed (recorded in the audit log; required when CI=true).",
           metavar="TEXT", shown_default="none"),
    Option("--rtgov-ab-ref",
           "git ref of the baseline code for A/B timing gates (default: ab_ref in gates.toml).",
           metavar="REF", shown_default="`ab_ref` of gates.toml"),
    Option("--rtgov-calibrate",
           "time the calibration kernel in every process (implied by calibrated gates).",
           default=False, ini="bool", shown_default="false"),
    Option("--rtgov-show", "gate results to show: breaches and notices (default), or all.",
           default="breaches", choices=("breaches", "all"), shown_default="`breaches`"),
    Option("--rtgov-signing-key",
           "key that signs checkpoints, baselines and artifacts (default: $RTGOV_SIGNING_KEY, "
           "else a local untrusted key in the state directory).",
           path=True, metavar="PATH", shown_default="`$RTGOV_SIGNING_KEY`, else the local key"),
    Option("--rtgov-keyring", "trusted public keys (default: rtgov.keyring in the rootdir).",
           path=True, metavar="PATH", shown_default="`rtgov.keyring` in the rootdir"),
    Option("--rtgov-require-signature",
           "refuse keys and signatures outside the keyring (implied by CI=true).",
           default=False, ini="bool", shown_default="false (true with `CI=true`)"),
    Option("--rtgov-report",
           "self-contained HTML gate report (default: report.html in the state directory; "
           "'off': none).",
           path=True, metavar="PATH", shown_default="`report.html` in the state directory"),
    Option("--rtgov-ledger-fsync",
           "fsync the ledger once per session, after its last record and before its "
           "checkpoint is signed (default: group commit), or after every record.",
           default="session", choices=("record", "session"), shown_default="`session`"),
    Option("--rtgov-ledger-timeout",
           "wait at most this long for another writer's ledger lock, then exit 7 "
           "(default: $RTGOV_LEDGER_TIMEOUT, else 60).",
           metavar="SECONDS", number=True, shown_default="`$RTGOV_LEDGER_TIMEOUT`, else 60",
           extra={"type": float}),
    Option("--rtgov-export",
           "also write the run as json|prometheus|otlp|junit|markdown to PATH (repeatable).",
           ini="linelist", metavar="FORMAT:PATH", shown_default="none",
           extra={"action": "append"}),
    Option("--rtgov-shard",
           "run only shard I of N (1-based), split by node id; merge shards with rtgov merge.",
           metavar="I/N", shown_default="none"),
    Option("--rtgov-log-json", "append pytest-rtgov's log events to PATH as JSON lines.",
           path=True, metavar="PATH", shown_default="none"),
    Option("--rtgov-stage-store",
           "where @stage entries are cached: a directory or an fsspec URL such as "
           "s3://bucket/prefix (default: stages/ in the state directory).",
           metavar="URL", shown_default="`stages/` in the state directory"),
    Option("--rtgov-stage-recheck",
           "re-execute these cached stages (comma-separated names, or all) and compare "
           "their outputs with the entry: a difference is a nondeterminism finding (exit 6).",
           metavar="NAMES", shown_default="none"),
    Option("--rtgov-stage-cache",
           "on (default): @stage entries are looked up and stored; off: every stage body "
           "runs and nothing is looked up or stored (rtgov replay recomputes stages so).",
           default="on", choices=("on", "off"), shown_default="`on`"),
    Option("--rtgov-keep-checkpoints",
           "keep every checkpoint's array in the state directory's object store, as "
           "rtgov.checkpoint(..., keep=True) does.",
           default=False, ini="bool", shown_default="false"),
    Option("--rtgov-determinism-check",
           "run each selected test twice in this process and report every checkpoint that "
           "differs between the two runs (exit 6); session fixtures are set up once.",
           default=False, ini="bool", shown_default="false"),
    Option("--rtgov-schedule",
           "run a schedule planned from this seed (a non-negative integer): the order, each "
           "xdist worker's tests and a seed per test; a run that leaves it fails (exit 6).",
           metavar="SEED", shown_default="none"),
    Option("--rtgov-schedule-policy",
           "how --rtgov-schedule plans: hash (default), lpt (longest first on the last runs' "
           "times) or group (xdist_group and module kept on one worker).",
           default="hash", choices=("hash", "lpt", "group"), shown_default="`hash`"),
    Option("--rtgov-schedule-plan",
           "run this plan file (a plan's JSON, as kept in the object store) as it is: its "
           "seed, policy, workers and order; exit 4 when it plans another collection.",
           path=True, metavar="PATH", shown_default="none"),
)  # fmt: skip

_BY_FLAG = {option.flag: option for option in OPTIONS}
# Options that do something without --rtgov/--rtgov-gate: never "ignored".
_WORK_ALONE = (
    "--rtgov", "--rtgov-gate", "--rtgov-shard", "--rtgov-schedule", "--rtgov-schedule-policy",
    "--rtgov-schedule-plan",
)


def add_options(parser: pytest.Parser) -> None:
    """Each option, ``default=None`` (see :func:`merge_ini`), and its ini key."""
    group = parser.getgroup("rtgov", "regression gates and telemetry (pytest-rtgov)")
    for option in OPTIONS:
        kwargs: dict[str, Any] = {"default": None, "help": option.help, **option.extra}
        if option.switch:
            kwargs["action"] = "store_true"
        if option.choices:
            kwargs["choices"] = option.choices
        if option.metavar:
            kwargs["metavar"] = option.metavar
        group.addoption(option.flag, **kwargs)
        parser.addini(option.key, f"{option.help[:-1]} (as {option.flag})", type=option.ini)


def merge_ini(config: pytest.Config) -> None:
    """Fill every option not given on the command line (``addopts`` included) from its
    ini key, else its default, in ``config.option``: every later ``getoption`` (in this
    process: the controller and each xdist worker alike) sees the one merged value.
    A bad ini value is a usage error (exit 4) naming the key and the file."""
    # pytest's own rule for its "paths" keys: the config file's directory, else the
    # invocation directory (an -o override without a config file)
    base = Path(config.inipath).parent if config.inipath else config.invocation_params.dir
    for option in OPTIONS:
        if getattr(config.option, option.key, None) is not None:
            continue
        value = _ini_value(config, option, base)
        setattr(config.option, option.key, option.default if value is None else value)


def _ini_value(config: pytest.Config, option: Option, base: Path) -> Any:
    """The ini key's value, checked and converted as the option would be (None: unset)."""
    try:
        raw = config.getini(option.key)
    except (TypeError, ValueError, pytest.UsageError) as exc:  # pytest 9: UsageError
        raise _bad_ini(config, option, str(exc)) from None
    if option.switch:
        return True if raw else None
    if option.ini == "linelist":
        return [_anchor_export(str(spec), base) for spec in raw] or None
    text = str(raw).strip()
    if not text:
        return None
    if option.choices and text not in option.choices:
        choices = ", ".join(repr(choice) for choice in option.choices)
        raise _bad_ini(config, option, f"invalid choice: {text!r} (choose from {choices})")
    if option.number:
        try:
            return float(text)
        except ValueError:
            raise _bad_ini(config, option, f"expected a number of seconds, not {text!r}") from None
    if option.path and not (option.flag == "--rtgov-report" and text == "off"):
        return str(base / text)
    return text


def _anchor_export(spec: str, base: Path) -> str:
    """``FORMAT:PATH`` with a relative PATH taken from the config file's directory; a
    malformed spec is kept as it is, for ``settings`` to refuse with its message."""
    fmt, sep, path = spec.strip().partition(":")
    return f"{fmt}:{base / path}" if sep and path else spec.strip()


def _bad_ini(config: pytest.Config, option: Option, what: str) -> pytest.UsageError:
    where = config.inipath.name if config.inipath else "the pytest configuration"
    return pytest.UsageError(f"pytest-rtgov: ini option {option.key} in {where}: {what}")


def ignored_options(config: pytest.Config) -> list[str]:
    """The ``--rtgov-*`` options written on this command line (not ``addopts`` or
    ``PYTEST_ADDOPTS``: configuration there waits for ``--rtgov``) that do nothing in a
    session without ``--rtgov``/``--rtgov-gate``."""
    if config.getoption("rtgov") or config.getoption("rtgov_gate"):
        return []
    found: list[str] = []
    for arg in config.invocation_params.args:
        flag = str(arg).partition("=")[0]
        if flag in _BY_FLAG and flag not in _WORK_ALONE and flag not in found:
            found.append(flag)
    return found


def warn_ignored_options(config: pytest.Config) -> None:
    """A :class:`RtgovOptionWarning` (a ``PytestWarning``) in the warnings summary
    naming the options that do nothing. ``-W error`` (or ``filterwarnings = error``)
    makes it a usage error (exit 4) with the same one line, not pytest's traceback;
    ``-W ignore::pytest_rtgov.plugin.RtgovOptionWarning`` silences it."""
    flags = ignored_options(config)
    if not flags or hasattr(config, "workerinput"):
        return
    warning = RtgovOptionWarning(
        f"pytest-rtgov: {', '.join(flags)} {'has' if len(flags) == 1 else 'have'} no effect "
        "without --rtgov or --rtgov-gate: nothing is measured (add --rtgov to record, "
        "--rtgov-gate to gate)"
    )
    try:
        config.issue_config_time_warning(warning, stacklevel=2)
    except RtgovOptionWarning as exc:  # -W error: the same line as a usage error
        raise pytest.UsageError(f"{exc} [turned into an error by -W error]") from None


def header_line(config: pytest.Config, settings: Any) -> str:
    """The header line naming the plugin's mode; ``settings``: the session's
    ``plugin.settings.Settings``, or None when nothing is measured."""
    shard = config.getoption("rtgov_shard")
    if settings is None:
        line = "rtgov: off (--rtgov records, --rtgov-gate gates)"
        return f"{line}, shard={shard}" if shard else line
    root = Path(config.rootpath)
    parts = [settings.mode, f"memory={settings.memory_mode}"]
    parts.append(f"state={_shown(settings.state_dir, root)}")
    if settings.mode == "gate" or settings.paths.gates_file.is_file():
        parts.append(f"gates={_shown(settings.paths.gates_file, root)}")
    if shard:
        parts.append(f"shard={shard}")
    return "rtgov: " + ", ".join(parts)


def _shown(path: Path, root: Path) -> str:
    """``path`` relative to the rootdir (pytest's header names the rootdir), else as is."""
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


INI_TABLE_BEGIN = "<!-- ini-options: generated from pytest_rtgov.plugin.options; do not edit -->"
INI_TABLE_END = "<!-- /ini-options -->"


def render_ini_table() -> str:
    """docs/usage.md's table of ini keys, between the two markers."""
    rows = [
        INI_TABLE_BEGIN,
        "| ini key | option | type | default | meaning |",
        "|---|---|---|---|---|",
    ]
    for option in OPTIONS:
        meaning = option.help[:-1].replace("|", "\\|")
        rows.append(
            f"| `{option.key}` | `{option.flag}` | {option.ini} | {option.shown_default} "
            f"| {meaning} |"
        )
    rows.append(INI_TABLE_END)
    return "\n".join(rows)
