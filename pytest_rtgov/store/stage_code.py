"""Find the project code a stage reaches, and digest it function by function.

Starting from the stage function (and the functions of the plain fixtures it requests),
every name the code uses is resolved the way Python resolves it at run time, through the
function's module globals, and followed when it leads to project code:

- a function or a class defined in a project file: its own definition is digested
  (``core/stage_code.py``'s normal form: comments, whitespace, docstrings and a stage's
  own decorator do not count; other decorators do) and the names *it* uses are followed
  in turn;
- a module: only the attributes the code names on it (``helpers.scale``) are followed;
- an ``import`` inside the function (``from helpers import scale``, ``import helpers``,
  ``from . import models``) binds its names as the module's globals would: the module is
  taken from ``sys.modules``, else located with ``importlib.util.find_spec`` and imported
  here only if it is a project file (importing runs its top level, as the stage's own
  import would a moment later); an installed module is never imported for a digest;
- a constant of a project module (numbers, strings, tuples, lists, dicts, sets and
  frozensets of those, numpy arrays): its value is digested (``conftest.py::EPOCHS``); a
  set by the sorted reprs of its items, the same under every ``PYTHONHASHSEED``;
- ``functools.partial(f, lr=...)``: ``f`` is followed, its constant arguments digested
  (``STEP=partial``);
- any other value of a project module (``CFG = Cfg(lr=0.1)``): the module-level
  statements that bind its name are digested (``CFG=binding``: assignments, ``for`` and
  ``with`` targets, ``from m import CFG`` followed to ``m``) and the names they use are
  followed; an instance of a project class also counts its class.

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

import ast
import functools
import hashlib
import importlib
import importlib.util
import inspect
import sys
import types
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pytest_rtgov.core.stage_code import (
    Imported,
    bindings,
    find_definition,
    local_imports,
    module_tree,
    node_digest,
    referenced_names,
)

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
    if isinstance(value, (tuple, list, set, frozenset)):
        return len(value) <= 1000 and all(_is_constant(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return len(value) <= 1000 and all(
            _is_constant(k, depth + 1) and _is_constant(v, depth + 1) for k, v in value.items()
        )
    return False


def _has_set(value: Any) -> bool:
    if isinstance(value, (set, frozenset)):
        return True
    if isinstance(value, dict):
        return any(_has_set(k) or _has_set(v) for k, v in value.items())
    return isinstance(value, (tuple, list)) and any(_has_set(v) for v in value)


def _stable_repr(value: Any) -> str:
    """``repr(value)``, but a set's items sorted by their own stable reprs: the same text
    under every ``PYTHONHASHSEED`` (a set of strings iterates in another order)."""
    if not _has_set(value):
        return repr(value)
    if isinstance(value, (set, frozenset)):
        return f"{type(value).__name__}({{{', '.join(sorted(map(_stable_repr, value)))}}})"
    if isinstance(value, dict):
        pairs = (f"{_stable_repr(k)}: {_stable_repr(v)}" for k, v in value.items())
        return "{" + ", ".join(pairs) + "}"
    items = ", ".join(map(_stable_repr, value))
    if isinstance(value, list):
        return f"[{items}]"
    return f"({items}{',' if len(value) == 1 else ''})"


def _constant_digest(value: Any) -> str | None:
    if _is_constant(value):
        text = _stable_repr(value)
        return hashlib.sha256(text.encode("utf-8", "backslashreplace")).hexdigest()
    module = type(value).__module__
    if module == "numpy" and hasattr(value, "tobytes"):
        head = f"{value.dtype.str}{value.shape}".encode()
        return hashlib.sha256(head + value.tobytes()).hexdigest()
    return None


# Parsed files and digested definitions, by the sha256 of the file's bytes: a file is
# read again on every walk (that is how a change shows), parsed once per content.
_Digested = tuple[str, str, frozenset[tuple[str, ...]], dict[str, Imported]]
_PARSED: dict[str, tuple[Any, dict[str, _Digested]]] = {}
# Where a name lives: the project file of its module, the name there, the module's globals.
_Owner = tuple[Path, str, dict[str, Any]]


class _Walker:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.digests: dict[str, str] = {}
        self._files: dict[Path, str] = {}
        self._seen: set[int] = set()
        self._bound: set[tuple[Path, str]] = set()

    def _parsed(self, path: Path) -> tuple[Any, dict[str, _Digested]]:
        content = self._files.get(path)
        if content is None:
            data = path.read_bytes()
            content = self._files[path] = hashlib.sha256(data).hexdigest()
            if content not in _PARSED:
                _PARSED[content] = (module_tree(data.decode("utf-8"), str(path)), {})
        return _PARSED[content]

    def _definition(self, path: Path, qualname: str) -> _Digested:
        """(the name digested, its digest, the names it uses, the names its own imports
        bind) of ``qualname`` in ``path``."""
        tree, done = self._parsed(path)
        if qualname not in done:
            node = find_definition(tree, qualname) if "<locals>" not in qualname else None
            # a function made inside another: its whole module counts
            shown, node = (qualname, node) if node is not None else ("<module>", tree)
            imports = local_imports(node) if node is not tree else {}
            names = frozenset(referenced_names(node))
            done[qualname] = (shown, node_digest(node), names, imports)
        return done[qualname]

    def _name(self, path: Path, qualname: str) -> str:
        return f"{path.relative_to(self.root).as_posix()}::{qualname}"

    def _module(self, name: str) -> types.ModuleType | None:
        """Module ``name``: from ``sys.modules``, else imported if it is a project file."""
        module = sys.modules.get(name)
        if module is not None:
            return module
        if "." in name and self._module(name.rsplit(".", 1)[0]) is None:
            return None  # find_spec would import an installed parent package
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return None
        if spec is None:
            return None
        if spec.has_location and spec.origin:
            places = [spec.origin]
        else:  # a namespace package: every folder it spans
            places = [str(Path(p, "__init__.py")) for p in spec.submodule_search_locations or []]
        if not places or any(_project_file(place, self.root) is None for place in places):
            return None
        try:
            return importlib.import_module(name)
        except Exception:  # the stage's own import will raise it, and show it
            return None

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
        qualname, digest, names, imports = self._definition(path, qualname)
        self.digests[self._name(path, qualname)] = digest
        namespace: dict[str, Any]
        if isinstance(obj, types.FunctionType):
            namespace = obj.__globals__
            cells = zip(obj.__code__.co_freevars, obj.__closure__ or (), strict=True)
            for name, cell in sorted(cells, key=lambda pair: pair[0]):
                try:
                    value = cell.cell_contents
                except ValueError:  # a cell not bound yet
                    continue
                self.value(value, f"{self._name(path, qualname)}.<closure>.{name}", None)
        else:  # a class: the names its body uses resolve in its module (read, not copied)
            module = sys.modules.get(getattr(obj, "__module__", "") or "")
            namespace = vars(module) if module is not None else {}
        for chain in sorted(names):
            if chain[0] in imports:
                self.imported(imports[chain[0]], chain, namespace)
            else:
                self.resolve(chain, namespace, path)

    def _absolute(self, target: Imported, namespace: dict[str, Any]) -> str | None:
        if not target.level:
            return target.module
        package = namespace.get("__package__") or ""
        try:
            return importlib.util.resolve_name("." * target.level + target.module, package)
        except (ImportError, ValueError):
            return None

    def imported(self, target: Imported, chain: tuple[str, ...], namespace: dict[str, Any]) -> None:
        """Follow ``chain``, whose first name an ``import`` inside the function binds."""
        name = self._absolute(target, namespace)
        module = self._module(name) if name else None
        if module is None or name is None:
            return  # not found, or not project code
        if target.attribute is None:
            top = name.split(".")[0]
            if chain[0] == top and top != name:  # import a.b: the name is a
                module = sys.modules.get(top, module)
            self.walk(module, chain[1:], None)
            return
        if target.attribute not in vars(module):  # from package import submodule
            submodule = self._module(f"{name}.{target.attribute}")
            if submodule is not None:
                self.walk(submodule, chain[1:], None)
            return
        self.walk(module, (target.attribute, *chain[1:]), None)

    def resolve(self, chain: tuple[str, ...], namespace: dict[str, Any], path: Path) -> None:
        if chain[0] not in namespace:
            return  # a builtin, a local or an argument
        self.walk(namespace[chain[0]], chain[1:], (path, chain[0], namespace))

    def walk(self, value: Any, rest: tuple[str, ...], owner: _Owner | None) -> None:
        """Follow the attributes ``rest`` of ``value`` through modules, to what they name;
        ``owner`` is where ``value`` itself lives."""
        for attribute in rest:
            if not isinstance(value, types.ModuleType) or attribute not in vars(value):
                break
            module_file = _project_file(getattr(value, "__file__", None), self.root)
            if module_file is None:
                return  # an attribute of an installed module
            owner = (module_file, attribute, vars(value))
            value = vars(value)[attribute]
        place = self._name(owner[0], owner[1]) if owner is not None else "<import>"
        self.value(value, place, owner)

    def value(self, value: Any, place: str, owner: _Owner | None) -> None:
        if isinstance(value, types.ModuleType):
            return
        if isinstance(value, (types.FunctionType, types.MethodType, type)) or (
            callable(value) and hasattr(value, "__wrapped__")
        ):
            self.definition(value)
            return
        in_project = place.split("::", 1)[0].endswith(".py")
        if isinstance(value, functools.partial):
            self.value(value.func, place, None)
            arguments = _constant_digest((value.args, sorted(value.keywords.items())))
            if in_project and arguments is not None:
                self.digests[f"{place}=partial"] = arguments
        elif in_project:
            digest = _constant_digest(value)
            if digest is not None:
                self.digests[f"{place}=value"] = digest
                return
        if owner is not None:
            self.binding(*owner)
        cls = type(value)
        if not isinstance(value, _CONSTANTS) and cls.__module__ not in ("builtins",):
            self.definition(cls)  # an instance of a project class: its class counts

    def binding(self, path: Path, name: str, namespace: dict[str, Any]) -> None:
        """Digest the module-level statements of ``path`` that bind ``name``, and follow
        the names they use (``CFG = Cfg(lr=0.1)``: ``Cfg``)."""
        if (path, name) in self._bound:
            return
        self._bound.add((path, name))
        tree, _ = self._parsed(path)
        statements = bindings(tree, name)
        own = [s for s in statements if not isinstance(s, ast.ImportFrom)]
        if own:  # an import only says where to look: the statements there count
            joined = "".join(node_digest(statement) for statement in own)
            digest = hashlib.sha256(joined.encode()).hexdigest()
            self.digests[f"{self._name(path, name)}=binding"] = digest
        for statement in statements:
            if isinstance(statement, ast.ImportFrom):  # from m import name: where it is bound
                for alias in statement.names:
                    if (alias.asname or alias.name) == name:
                        target = Imported(statement.module or "", alias.name, statement.level)
                        self.imported(target, (name,), namespace)
                continue
            for chain in sorted(referenced_names(statement)):
                if chain[0] != name:
                    self.resolve(chain, namespace, path)


def code_digests(functions: Iterable[Any], *, root: Path) -> dict[str, str]:
    """``{"path::qualname": sha256 hex}`` of the project code ``functions`` reach, read
    from disk now. A file that no longer parses raises SyntaxError."""
    walker = _Walker(root.resolve())
    for function in functions:
        walker.definition(function)
    return dict(sorted(walker.digests.items()))
