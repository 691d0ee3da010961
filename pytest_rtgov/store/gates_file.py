"""Reading ``gates.toml`` from disk (tomllib, or tomli before Python 3.11)."""

from __future__ import annotations

import glob
import sys
from pathlib import Path

from pytest_rtgov.core.gates_config import GatesConfig, GatesConfigError, parse_gates

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["check_paths", "load_gates"]


def load_gates(path: Path) -> GatesConfig:
    """Parse and validate; raises GatesConfigError with the file, place and expectation."""
    source = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GatesConfigError(
            source, "file", "a gates file: create gates.toml or pass --rtgov-gates PATH"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise GatesConfigError(source, str(exc), "valid TOML") from None
    return parse_gates(data, source=source)


def check_paths(config: GatesConfig, rootdir: Path, registered_markers: set[str]) -> None:
    """Catch selectors that can never select anything, before any test runs.

    A node-id glob whose file part matches no file under ``rootdir``, or a marker
    that is not registered, is a typo: raise. (A glob that matches files which were
    not collected this session, e.g. ``pytest some/other/path``, is fine.)
    """
    for index, gate in enumerate(config.gates):
        place = gate.place or f"gates[{index}]"
        for j, pattern in enumerate(gate.tests):
            file_part = pattern.split("::", 1)[0]
            if not glob.glob(str(rootdir / file_part), recursive=True) and not glob.glob(
                file_part, recursive=True
            ):
                raise GatesConfigError(
                    config.source,
                    f"{place}.tests[{j}]",
                    f"a node-id glob whose file part matches a file (no file matches "
                    f"{file_part!r} under {rootdir})",
                )
        for j, marker in enumerate(gate.markers):
            if marker not in registered_markers:
                raise GatesConfigError(
                    config.source,
                    f"{place}.markers[{j}]",
                    f"a registered marker ({marker!r} is not registered; "
                    "add it to [tool.pytest.ini_options] markers)",
                )
