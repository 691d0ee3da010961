"""The project's pytest configuration, read for the ``rtgov`` command: the config file
pytest would use, found as pytest finds it, and the rtgov settings in it.

pytest, run without arguments from the same directory, would use the first of
``pytest.toml``, ``.pytest.toml``, ``pytest.ini``, ``.pytest.ini``, ``pyproject.toml``
(with a ``[tool.pytest]`` or ``[tool.pytest.ini_options]`` table), ``tox.ini`` (with
``[pytest]``) and ``setup.cfg`` (with ``[tool:pytest]``) in the working directory or
the nearest directory above it; its directory is the rootdir. Without one, a
``pyproject.toml`` above names the rootdir, else a ``setup.py``, else the working
directory. The files are read with tomllib and iniconfig, the parser pytest itself
uses for ini files (no private pytest API: its ``locate_config`` changed its return
type between pytest 8 and 9).

A setting is taken, in this order, from the command's own option, the last
``--rtgov-x VALUE`` (or ``--rtgov-x=VALUE``) in ``addopts`` and then ``$PYTEST_ADDOPTS``
(relative to the working directory, as pytest takes them), an ``-o rtgov_x=VALUE``
there, and the ``rtgov_x`` ini key (relative to the config file's directory).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pytest_rtgov.errors import ReadError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["CONFIG_FILES", "PytestConfig", "locate"]

CONFIG_FILES = (
    *("pytest.toml", ".pytest.toml", "pytest.ini", ".pytest.ini"),
    *("pyproject.toml", "tox.ini", "setup.cfg"),
)


@dataclass(frozen=True)
class PytestConfig:
    """The rootdir, the config file (None: none found) and its pytest section's keys."""

    rootdir: Path
    inifile: Path | None
    values: Mapping[str, object]
    environ: Mapping[str, str]

    def addopts(self) -> list[str]:
        """``addopts`` of the file, then ``$PYTEST_ADDOPTS`` (pytest puts them in this
        order before the command line's own arguments: the later wins)."""
        value = self.values.get("addopts", "")
        args = [str(arg) for arg in value] if isinstance(value, list) else _split(value, self)
        return args + _split(self.environ.get("PYTEST_ADDOPTS", ""), self, "$PYTEST_ADDOPTS")

    def setting(self, key: str) -> Path | None:
        """The path setting ``key`` (``rtgov_dir``, ``rtgov_gates``, ...) where the
        project sets one: ``addopts`` first, then an ``-o`` override, then the ini key."""
        flag = "--" + key.replace("_", "-")
        parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
        parser.add_argument(flag, dest="value")
        parser.add_argument("-o", "--override-ini", dest="overrides", action="append")
        try:
            known, _ = parser.parse_known_args(self.addopts())
        except argparse.ArgumentError as exc:  # "--rtgov-dir" last, without its value
            raise ReadError(f"addopts of {self.inifile or 'the environment'}: {exc}") from None
        if known.value:
            return Path(known.value)
        overrides = dict(item.partition("=")[::2] for item in known.overrides or ())
        value = overrides.get(key) or self.values.get(key)
        if value is None or not str(value).strip():
            return None
        base = self.inifile.parent if self.inifile is not None else Path().absolute()
        return _near(base / str(value).strip())


def locate(
    invocation: Path | None = None, environ: Mapping[str, str] | None = None
) -> PytestConfig:
    """The configuration pytest would find from ``invocation`` (default: the working
    directory). A config file that cannot be parsed is a :class:`ReadError` naming it."""
    start = (invocation or Path()).absolute()
    env = os.environ if environ is None else environ
    first_pyproject: Path | None = None
    for base in (start, *start.parents):
        for name in CONFIG_FILES:
            path = base / name
            if not path.is_file():
                continue
            if name == "pyproject.toml" and first_pyproject is None:
                first_pyproject = path
            values = _load(path)
            if values is not None:
                return PytestConfig(base, path, values, env)
    if first_pyproject is not None:
        return PytestConfig(first_pyproject.parent, first_pyproject, {}, env)
    root = next((base for base in (start, *start.parents) if (base / "setup.py").is_file()), start)
    return PytestConfig(root, None, {}, env)


def _load(path: Path) -> dict[str, object] | None:
    """The file's pytest section (None: the file has none; pytest would look further)."""
    if path.suffix == ".toml":
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ReadError(f"{path}: not valid TOML: {exc}") from None
        if path.name != "pyproject.toml":  # pytest.toml: always the config file
            return dict(document.get("pytest", {}))
        table = document.get("tool", {}).get("pytest")
        if not isinstance(table, dict):
            return None
        ini_options = table.get("ini_options")
        native = {key: value for key, value in table.items() if key != "ini_options"}
        return native or (dict(ini_options) if isinstance(ini_options, dict) else None)
    import iniconfig

    try:
        parsed = iniconfig.IniConfig(str(path))
    except iniconfig.ParseError as exc:
        raise ReadError(f"{path}: not a valid ini file: {exc}") from None
    section = "tool:pytest" if path.name == "setup.cfg" else "pytest"
    if section in parsed:
        return dict(parsed[section].items())
    return {} if path.name in ("pytest.ini", ".pytest.ini") else None


def _split(value: object, config: PytestConfig, where: str = "addopts") -> list[str]:
    try:
        return shlex.split(str(value))
    except ValueError as exc:  # an unclosed quote
        raise ReadError(f"{where} of {config.inifile or 'the environment'}: {exc}") from None


def _near(path: Path) -> Path:
    """``path`` relative to the working directory where it lies inside it (messages
    then name ``build/rtgov``, as the options given there do), else absolute."""
    try:
        return path.relative_to(Path().absolute())
    except ValueError:
        return path
