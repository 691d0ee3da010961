"""The options several ``rtgov`` commands share, spelled one way everywhere: ``--gates``,
``--keyring``, ``--signing-key``, ``-o/--out`` and ``--format``; the deprecated
spellings (``--output``, ``--json``) that still work and say so on stderr; and
:func:`apply_project_config`, which fills ``--dir``, ``--gates``, ``--keyring`` and
``--signing-key`` not given from the project's pytest configuration
(:mod:`pytest_rtgov.store.pytest_config`), as a pytest session there would resolve them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_rtgov.store import paths as paths_module

__all__ = [
    "DEFAULT_GATES",
    "DEFAULT_KEYRING",
    "DEFAULT_STATE_DIR",
    "add_format",
    "add_gates",
    "add_keyring",
    "add_out",
    "add_signing_key",
    "apply_project_config",
    "paths",
]

DEFAULT_STATE_DIR = Path(paths_module.DEFAULT_STATE_DIR)
DEFAULT_GATES = Path(paths_module.DEFAULT_GATES)
DEFAULT_KEYRING = Path(paths_module.DEFAULT_KEYRING)


def paths(args: argparse.Namespace) -> paths_module.Paths:
    """Where this command reads and writes: ``--dir``, ``--gates`` and ``--keyring``
    (where the command has them) resolved in the one place, :mod:`pytest_rtgov.store.paths`."""
    return paths_module.Paths.resolve(
        invocation=Path(),
        rootdir=getattr(args, "project_root", None),
        state_dir=args.dir,
        gates=getattr(args, "gates", None),
        keyring=getattr(args, "keyring", None),
    )


def apply_project_config(args: argparse.Namespace) -> None:
    """Fill the path options this command has and the user did not give (``None``) from
    the project's pytest configuration: ``--rtgov-dir``/``--rtgov-gates``/
    ``--rtgov-keyring``/``--rtgov-signing-key`` in ``addopts`` or ``$PYTEST_ADDOPTS``, an
    ``-o`` override there, the ``rtgov_*`` ini keys; else the defaults (the state
    directory ``.rtgov`` here, ``gates.toml`` and ``rtgov.keyring`` in pytest's rootdir).
    The config file is read only when an option is left to it."""
    wanted = [
        name for name in ("dir", "gates", "keyring", "signing_key")
        if hasattr(args, name) and getattr(args, name) is None
    ]  # fmt: skip
    if not wanted:
        return
    from pytest_rtgov.store.pytest_config import locate

    project = locate()
    root = project.rootdir if project.rootdir != Path().absolute() else Path()
    args.project_root = root
    defaults = {"dir": DEFAULT_STATE_DIR, "gates": root / DEFAULT_GATES}
    defaults["keyring"] = root / DEFAULT_KEYRING
    for name in wanted:
        key = "rtgov_dir" if name == "dir" else f"rtgov_{name}"
        setattr(args, name, project.setting(key) or defaults.get(name))


class _Deprecated(argparse.Action):
    """An old spelling: stores ``value`` (or the argument) in ``dest`` and warns once."""

    def __init__(
        self,
        option_strings: Sequence[str],
        dest: str,
        *,
        use: str,
        value: Any = None,
        nargs: int | str | None = None,
        **kwargs: Any,
    ) -> None:
        self.use, self.value = use, value
        super().__init__(option_strings, dest, nargs=0 if value is not None else nargs, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        print(f"rtgov: warning: {option_string} is deprecated; use {self.use}", file=sys.stderr)
        setattr(namespace, self.dest, self.value if self.value is not None else values)


def add_gates(parser: argparse.ArgumentParser, what: str = "gates file") -> None:
    parser.add_argument(
        "--gates",
        type=Path,
        default=None,  # apply_project_config: the project's rtgov_gates, else gates.toml
        help=f"{what} (default: the project's pytest setting, else gates.toml)",
    )


def add_keyring(parser: argparse.ArgumentParser, what: str = "trusted public keys") -> None:
    parser.add_argument(
        "--keyring",
        type=Path,
        default=None,  # apply_project_config: the project's rtgov_keyring, else rtgov.keyring
        help=f"{what} (default: the project's pytest setting, else rtgov.keyring)",
    )


def add_signing_key(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--signing-key",
        type=Path,
        default=None,
        help=f"key that signs {what} (default: the project's pytest setting, else "
        "$RTGOV_SIGNING_KEY, else the local key)",
    )


def add_out(parser: argparse.ArgumentParser, help: str, *, old_output: bool = False) -> None:
    """``-o/--out PATH``; ``old_output`` keeps ``--output`` as a deprecated alias."""
    parser.add_argument("-o", "--out", type=Path, default=None, help=help)
    if old_output:
        parser.add_argument(
            "--output", dest="out", type=Path, action=_Deprecated, use="--out",
            help=argparse.SUPPRESS,
        )  # fmt: skip


def add_format(
    parser: argparse.ArgumentParser,
    choices: Sequence[str],
    default: str,
    help: str,
    *,
    old_json: bool = False,
) -> None:
    """``--format CHOICE``; ``old_json`` keeps ``--json`` as a deprecated ``--format json``."""
    parser.add_argument("--format", choices=tuple(choices), default=default, help=help)
    if old_json:
        parser.add_argument(
            "--json", dest="format", action=_Deprecated, use="--format json", value="json",
            help=argparse.SUPPRESS,
        )  # fmt: skip
