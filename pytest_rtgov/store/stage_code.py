"""Find the project code a stage reaches, and digest it function by function.

Starting from the stage function (and the functions of the plain fixtures it requests),
every name the code uses is resolved the way Python resolves it at run time, through the
function's module globals, and followed when it leads to project code:

- a function or a class defined in a project file: its own definition is digested
  (``core/stage_code.py``'s normal form: comments, whitespace, docstrings and a stage's
  own decorator do not count; other decorators do) and the names *it* uses are followed
  in turn;
- a module: only the attributes the code names on it (``helpers.scale``) are followed;
- a constant of a project module (numbers, strings, tuples, lists and dicts of those,
  numpy arrays): its value is digested (``conftest.py::EPOCHS``).

Granularity: one digest per function or class (a class counts whole, methods and all).
An edit to another function of the same module changes nothing. Not followed: code
reached only through the attributes of a *value* (``model.step()`` where no name in the
code is ``Model``), code run through ``getattr`` with a computed name, another stage
(an argument named like an upstream stage: its outputs are in the key, not its code),
and anything outside the project (installed packages: their versions are in the key's
environment).

Files are read from disk every time (:func:`code_digests`), never from ``linecache``: the
same call after the stage's body tells whether its code moved while it ran.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
import types
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pytest_rtgov.core.stage_code import find_definition, module_tree, node_digest, referenced_names

__all__ = ["code_digests"]

_CONSTANTS = (int, float, str, bytes, bool, type(None), complex)
_OWN_PACKAGE = "pytest_rtgov"


def _project_file(path: str | None, root: Path) -> Path | None:
    if not path or not path.endswith(".py"):
        return None
    resolved = Path(path).resolve()
    try:
        relative = resolved.relative_to(root)
    except ValueError:
        return None
    parts = relative.parts
    if any(p in ("site-packages", "dist-packages") or p.startswith(".") for p in parts):
        return None
    if parts and parts[0] == _OWN_PACKAGE:
        return None
    return resolved


def _is_constant(value: Any, depth: int = 0) -> bool:
    if isinstance(value, _CONSTANTS):
        return True
    if depth > 3:
        return False
    if isinstance(value, (tuple, list, frozenset)):
        return len(value) <= 1000 and all(_is_constant(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return len(value) <= 1000 and all(
            _is_constant(k, depth + 1) and _is_constant(v, depth + 1) for k, v in value.items()
        )
    return False


def _constant_digest(value: Any) -> str | None:
    if _is_constant(value):
        return hashlib.sha256(repr(value).encode("utf-8", "backslashreplace")).hexdigest()
    module = type(value).__module__
    if module == "numpy" and hasattr(value, "tobytes"):
        head = f"{value.dtype.str}{value.shape}".encode()
        return hashlib.sha256(head + value.tobytes()).hexdigest()
    return None


# Parsed files and digested definitions, by the sha256 of the file's bytes: a file is
# read again on every walk (that is how a change shows), parsed once per content.
_Digested = tuple[str, str, frozenset[tuple[str, ...]]]
_PARSED: dict[str, tuple[Any, dict[str, _Digested]]] = {}


class _Walker:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.digests: dict[str, str] = {}
        self._files: dict[Path, str] = {}
        self._seen: set[int] = set()

    def _parsed(self, path: Path) -> tuple[Any, dict[str, _Digested]]:
        content = self._files.get(path)
        if content is None:
            data = path.read_bytes()
            content = self._files[path] = hashlib.sha256(data).hexdigest()
            if content not in _PARSED:
                _PARSED[content] = (module_tree(data.decode("utf-8"), str(path)), {})
        return _PARSED[content]

    def _definition(self, path: Path, qualname: str) -> _Digested:
        """(the name digested, its digest, the names it uses) of ``qualname`` in ``path``."""
        tree, done = self._parsed(path)
        if qualname not in done:
            node = find_definition(tree, qualname) if "<locals>" not in qualname else None
            # a function made inside another: its whole module counts
            shown, node = (qualname, node) if node is not None else ("<module>", tree)
            done[qualname] = (shown, node_digest(node), frozenset(referenced_names(node)))
        return done[qualname]

    def _name(self, path: Path, qualname: str) -> str:
        return f"{path.relative_to(self.root).as_posix()}::{qualname}"

    def definition(self, obj: Any) -> None:
        """Digest a project function or class and follow the names it uses."""
        if getattr(obj, "_rtgov_stage", None) is not None:
            return  # another stage's fixture: it enters the key by its outputs, not its code
        obj = inspect.unwrap(obj) if callable(obj) else obj
        if id(obj) in self._seen:
            return
        self._seen.add(id(obj))
        if isinstance(obj, types.MethodType):
            obj = obj.__func__
        try:
            source_file = inspect.getsourcefile(obj)
        except TypeError:
            return
        path = _project_file(source_file, self.root)
        if path is None:
            return
        qualname = getattr(obj, "__qualname__", getattr(obj, "__name__", "?"))
        qualname, digest, names = self._definition(path, qualname)
        self.digests[self._name(path, qualname)] = digest
        module = sys.modules.get(getattr(obj, "__module__", "") or "")
        namespace = dict(vars(module)) if module is not None else {}
        if isinstance(obj, types.FunctionType):
            namespace = obj.__globals__
            closure = inspect.getclosurevars(obj).nonlocals
            for name, value in sorted(closure.items()):
                self.value(value, f"{self._name(path, qualname)}.<closure>.{name}", (name,))
        for chain in sorted(names):
            self.resolve(chain, namespace, path)

    def resolve(self, chain: tuple[str, ...], namespace: dict[str, Any], path: Path) -> None:
        if chain[0] not in namespace:
            return  # a builtin, a local or an argument
        value = namespace[chain[0]]
        place = self._name(path, chain[0])
        for depth, attribute in enumerate(chain[1:], start=1):
            if not isinstance(value, types.ModuleType):
                break
            if attribute not in vars(value):
                break
            module_file = _project_file(getattr(value, "__file__", None), self.root)
            value = vars(value)[attribute]
            if module_file is None:
                return  # an attribute of an installed module
            place = self._name(module_file, ".".join(chain[1 : depth + 1]))
        self.value(value, place, chain)

    def value(self, value: Any, place: str, chain: tuple[str, ...]) -> None:
        if isinstance(value, types.ModuleType):
            return
        if isinstance(value, (types.FunctionType, types.MethodType, type)) or (
            callable(value) and hasattr(value, "__wrapped__")
        ):
            self.definition(value)
            return
        if place.split("::", 1)[0].endswith(".py"):
            digest = _constant_digest(value)
            if digest is not None:
                self.digests[f"{place}=value"] = digest
                return
        cls = type(value)
        if not isinstance(value, _CONSTANTS) and cls.__module__ not in ("builtins",):
            self.definition(cls)  # an instance of a project class: its class counts


def code_digests(functions: Iterable[Any], *, root: Path) -> dict[str, str]:
    """``{"path::qualname": sha256 hex}`` of the project code ``functions`` reach, read
    from disk now. A file that no longer parses raises SyntaxError."""
    walker = _Walker(root.resolve())
    for function in functions:
        walker.definition(function)
    return dict(sorted(walker.digests.items()))
