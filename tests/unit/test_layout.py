"""The layout of pytest_rtgov/ as docs/architecture.md describes it: small modules, each named;
and the log events as docs/usage.md lists them.

The import rules between the floors are checked by import-linter (``lint-imports``, contracts
in pyproject.toml) and the types by mypy, both in ``make test``; this checks what they do not.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "pytest_rtgov"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
USAGE = ROOT / "docs" / "usage.md"
MAX_LINES = 400
# The Merkle core keeps RFC 9162's algorithms side by side, each next to its proof.
EXEMPT = {"core/merkle.py"}


def modules() -> list[str]:
    """Every module of the package, as its path under pytest_rtgov/ (``core/keys.py``)."""
    return sorted(
        p.relative_to(PACKAGE).as_posix()
        for p in PACKAGE.rglob("*.py")
        if "__pycache__" not in p.parts
    )


def doc_name(module: str) -> str:
    """How docs/architecture.md names a module: a package by its folder (``core/``, and
    ``pytest_rtgov/`` for the top), any other module by its path (``core/keys.py``)."""
    if module == "__init__.py":
        return "pytest_rtgov/"
    if module.endswith("/__init__.py"):
        return module.removesuffix("__init__.py")
    return module


def test_no_module_is_over_400_lines() -> None:
    long = {}
    for module in modules():
        lines = len((PACKAGE / module).read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES and module not in EXEMPT:
            long[module] = lines
    assert not long, (
        f"modules over {MAX_LINES} lines (split them by role, each part with a docstring "
        "naming it): " + ", ".join(f"{m} ({n} lines)" for m, n in sorted(long.items()))
    )


def test_every_module_is_named_in_the_architecture() -> None:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    named = set(re.findall(r"`([\w/]+(?:\.py|/))`", text))
    missing = [doc_name(m) for m in modules() if doc_name(m) not in named]
    assert not missing, (
        "modules docs/architecture.md does not name (add a line saying its role, as "
        f"`core/keys.py`, or `core/` for a package): {', '.join(missing)}"
    )


def test_every_module_the_architecture_names_exists() -> None:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    named = {n.removeprefix("pytest_rtgov/") for n in re.findall(r"`([\w/]+\.py)`", text)}
    known = set(modules())
    # Paths into the package's folders; others (tests/..., xdist's remote.py) are not modules.
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    gone = sorted(n for n in named if n.split("/")[0] in folders and n not in known)
    assert not gone, f"docs/architecture.md names modules that do not exist: {', '.join(gone)}"


# An event name is "<area>.<what>", passed to logs.log_event (or, for index.rebuilt, in a
# warning's fields); the areas are those docs/usage.md lists.
EVENT = re.compile(
    r"(ab|audit|baseline|cli|export|gate|index|ledger|record|replay|report|session|store)\.[a-z_]+"
)
FILE_SUFFIXES = {"html", "json", "jsonl", "md", "pub", "key", "toml", "txt", "xml"}


def events_in_code() -> set[str]:
    found = set()
    for module in modules():
        tree = ast.parse((PACKAGE / module).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                value = node.value
                if EVENT.fullmatch(value) and value.split(".")[1] not in FILE_SUFFIXES:
                    found.add(value)
    return found


def events_in_docs() -> set[str]:
    text = USAGE.read_text(encoding="utf-8")
    section = text[text.index("## Logging") :]
    section = section[: section.index("\n## ", 1)]
    return set(re.findall(r"^\| `([a-z_.]+)` \|", section, flags=re.M))


def test_the_log_events_documented_are_those_logged() -> None:
    code, docs = events_in_code(), events_in_docs()
    assert code, "no log event found in pytest_rtgov/: is the EVENT pattern stale?"
    assert not code - docs, f"log events docs/usage.md (## Logging) lacks: {sorted(code - docs)}"
    assert not docs - code, f"docs/usage.md lists log events nothing logs: {sorted(docs - code)}"
