"""Reading ``gates.toml`` from disk (tomllib, or tomli before Python 3.11)."""

from __future__ import annotations

import glob
import re
import sys
from collections.abc import Iterable
from pathlib import Path

from pytest_rtgov.core.gates_config import GatesConfig, GatesConfigError, parse_gates

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["baseline_directory", "check_paths", "load_gates"]


def load_gates(path: Path) -> GatesConfig:
    """Parse and validate; raises GatesConfigError with the file, place and expectation.

    Never anything else: an unreadable file, bytes that are not UTF-8 and numbers
    TOML cannot hold (an integer past Python's 4300-digit limit) are GatesConfigErrors
    naming the line.
    """
    source = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise GatesConfigError(
            source, "file", "a gates file: create gates.toml or pass --rtgov-gates PATH"
        ) from None
    except OSError as exc:
        raise GatesConfigError(source, "file", f"a readable file ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise GatesConfigError(
            source,
            f"line {line} (byte {exc.start})",
            f"UTF-8 text (byte {raw[exc.start]:#04x} is not valid UTF-8 there)",
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib says "Invalid value (at line 1, column 6)": the place, then what is wrong
        found = re.fullmatch(r"(.*) \(at (.*)\)", str(exc), re.DOTALL)
        what, place = (found.group(1), found.group(2)) if found else (str(exc), "file")
        expected = f"valid TOML ({what[:1].lower()}{what[1:]})"
        raise GatesConfigError(source, place, expected) from None
    except ValueError as exc:  # int("9" * 5000): past the integer-string limit
        long_number = re.search(r"[0-9][0-9_]{999,}", text)
        place = f"line {text.count(chr(10), 0, long_number.start()) + 1}" if long_number else "file"
        raise GatesConfigError(source, place, f"a number TOML can hold ({exc})") from None
    return parse_gates(data, source=source)


def baseline_directory(config: GatesConfig, project: Iterable[Path]) -> Path:
    """The baseline directory of ``config`` (relative paths against the gates file's
    directory), refused unless it lies inside the project.

    The project is the directory holding the gates file and each of ``project`` (pytest's
    rootdir; the CLI's working directory). The check is on the path with symlinks
    resolved, so neither ``"../../../../etc"``, an absolute path elsewhere nor a symlink
    inside the project that points out of it can make a baseline write land outside.
    """
    gates_dir = Path(config.source).parent
    directory = Path(config.baseline)
    if not directory.is_absolute():
        directory = gates_dir / directory
    roots = [gates_dir, *project]
    resolved = directory.resolve()
    if not any(resolved.is_relative_to(root.resolve()) for root in roots):
        where = " or ".join(dict.fromkeys(str(root.resolve()) for root in roots))
        raise GatesConfigError(
            config.source,
            "defaults.baseline",
            f"a directory inside the project ({where}); {config.baseline!r} resolves to "
            f"{resolved}, outside it",
        )
    if any(resolved == root.resolve() for root in roots):
        raise GatesConfigError(
            config.source,
            "defaults.baseline",
            f"a directory of its own inside the project; {config.baseline!r} is the project "
            f"folder {resolved} itself, and sealing it would sign every file there",
        )
    if any(resolved == (root / ".rtgov").resolve() for root in roots):
        raise GatesConfigError(
            config.source,
            "defaults.baseline",
            f"a directory of its own; {config.baseline!r} is the default state directory "
            f"{resolved} itself, which holds runs, keys and the ledger",
        )
    return directory


def check_paths(config: GatesConfig, rootdir: Path, registered_markers: set[str]) -> None:
    """Catch selectors that can never select anything, before any test runs.

    A node-id glob whose file part matches no file under ``rootdir``, or a marker
    that is not registered, is a typo: raise. (A glob that matches files which were
    not collected this session, e.g. ``pytest some/other/path``, is fine.) A baseline
    directory outside the project (:func:`baseline_directory`) is refused too.
    """
    baseline_directory(config, [rootdir])
    for index, gate in enumerate(config.gates):
        place = gate.place or f"gates[{index}]"
        for j, pattern in enumerate(gate.tests):
            file_part = pattern.split("::", 1)[0]
            if _outside(file_part):
                raise GatesConfigError(
                    config.source,
                    f"{place}.tests[{j}]",
                    f"a node-id glob relative to the rootdir ({file_part!r} is absolute or "
                    "climbs out with '..'; node ids do neither)",
                )
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


def _outside(file_part: str) -> bool:
    """An absolute path, or one whose ``..`` parts climb above where it starts."""
    if file_part.startswith(("/", "\\")) or (len(file_part) > 1 and file_part[1] == ":"):
        return True
    depth = 0
    for part in file_part.replace("\\", "/").split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False
