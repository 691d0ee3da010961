"""Code digests of a stage: a function's or class's code, normalized, and the names it uses.

Pure: it reads source text handed to it. ``store/stage_code.py`` finds the files and
follows the names to the objects they resolve to.

The normal form is the abstract syntax tree without positions (``ast.dump`` without
attributes), with every docstring and a stage's own decorator dropped: comments, blank
lines, indentation, line wrapping and docstrings do not change a digest; any change to a
statement, a name, a constant or another decorator (``@functools.lru_cache``,
``@numba.jit(fastmath=True)``) does. A stage's decorator (an expression whose callee is
named ``stage``: ``@stage``, ``@stage(...)``, ``@pytest_rtgov.stage(...)``) carries its
params and seeds, which its key covers separately; it is left out of the names too.

>>> a = "def f(x):\\n    # double it\\n    return 2 * x\\n"
>>> b = "def f(x):\\n    '''Twice x.'''\\n    return 2*x\\n"
>>> node_digest(find_definition(a, "f")) == node_digest(find_definition(b, "f"))
True
>>> sorted(referenced_names(find_definition("def f(x):\\n    return np.sum(g(x))\\n", "f")))
[('g',), ('np', 'sum'), ('x',)]
"""

from __future__ import annotations

import ast
import hashlib
from typing import NamedTuple

__all__ = [
    "Imported",
    "bindings",
    "find_definition",
    "is_stage_decorator",
    "local_imports",
    "module_tree",
    "node_digest",
    "referenced_names",
]

_Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
_BODIES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)  # docstrings


def module_tree(source: str, filename: str = "<source>") -> ast.Module:
    """Parse ``source``; a SyntaxError propagates (the caller names the file)."""
    return ast.parse(source, filename=filename)


def find_definition(source: str | ast.Module, qualname: str) -> _Definition | None:
    """The ``def`` or ``class`` node of ``qualname`` (``"C.method"`` for a method) at the
    module's top level or nested in classes; None if absent or nested in a function."""
    tree = module_tree(source) if isinstance(source, str) else source
    body: list[ast.stmt] = tree.body
    node: _Definition | None = None
    for part in qualname.split("."):
        node = None
        for statement in body:
            if isinstance(statement, _Definition) and statement.name == part:
                node = statement  # the last definition wins, as at run time
        if node is None:
            return None
        body = node.body
    return node


def is_stage_decorator(expr: ast.expr) -> bool:
    """``@stage``, ``@stage(...)``, ``@anything.stage(...)``: a stage's own decorator."""
    callee = expr.func if isinstance(expr, ast.Call) else expr
    if isinstance(callee, ast.Attribute):
        return callee.attr == "stage"
    return isinstance(callee, ast.Name) and callee.id == "stage"


def _normal_form(node: ast.AST) -> str:
    """``ast.dump`` of ``node`` without docstrings and stage decorators.

    The fields are swapped on the tree itself and put back before returning, rather
    than on a ``copy.deepcopy`` of it: the copy was most of a stage hit's key time
    (docs/benchmarks.md, "Stage cache"), more under tracemalloc. The trees are the parsed
    files ``store/stage_code.py`` caches; nothing else reads them meanwhile (one thread).
    """
    swapped: list[tuple[ast.AST, str, object]] = []
    try:
        for inner in ast.walk(node):
            if isinstance(inner, _Definition) and any(
                is_stage_decorator(d) for d in inner.decorator_list
            ):
                swapped.append((inner, "decorator_list", inner.decorator_list))
                inner.decorator_list = [
                    d for d in inner.decorator_list if not is_stage_decorator(d)
                ]
            if isinstance(inner, _BODIES):
                body = inner.body
                if (
                    body
                    and isinstance(body[0], ast.Expr)
                    and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)
                ):
                    swapped.append((inner, "body", body))
                    inner.body = body[1:] or [ast.Pass()]
        return ast.dump(node, include_attributes=False)
    finally:
        for inner, name, value in reversed(swapped):
            setattr(inner, name, value)


def node_digest(node: ast.AST | None) -> str:
    """sha256 hex of the normal form of ``node`` (see the module docstring)."""
    text = "<absent>" if node is None else _normal_form(node)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def referenced_names(node: ast.AST) -> set[tuple[str, ...]]:
    """Every dotted name the code loads: ``("np", "sum")`` for ``np.sum``, ``("g",)`` for
    ``g``. Names the code binds itself are included too; resolving them against the
    module's globals finds what, if anything, they shadow."""
    names: set[tuple[str, ...]] = set()
    inner: set[int] = set()
    for sub in ast.walk(node):
        if isinstance(sub, _Definition):  # a stage's decorator: keyed as params and seeds
            for decorator in sub.decorator_list:
                if is_stage_decorator(decorator):
                    inner |= {id(n) for n in ast.walk(decorator)}
        if isinstance(sub, ast.Attribute) and id(sub) not in inner:
            chain: list[str] = []
            current: ast.expr = sub
            while isinstance(current, ast.Attribute):
                chain.append(current.attr)
                current = current.value
                inner.add(id(current))
            if isinstance(current, ast.Name):
                chain.append(current.id)
                names.add(tuple(reversed(chain)))
        elif isinstance(sub, ast.Name) and id(sub) not in inner:
            names.add((sub.id,))
    return names


class Imported(NamedTuple):
    """What an ``import`` statement binds a name to: ``module`` (absolute, or relative to
    the package ``level`` dots up), and ``attribute`` of it for ``from module import
    attribute``; ``module`` whole for ``import module as name``."""

    module: str
    attribute: str | None
    level: int


def local_imports(node: ast.AST) -> dict[str, Imported]:
    """The names ``import`` statements inside ``node`` bind (a function importing in its
    body), by name: ``import a.b`` binds ``a`` (``Imported("a.b", None, 0)``), ``from .m
    import x as y`` binds ``y`` (``Imported("m", "x", 1)``). Star imports bind nothing."""
    bound: dict[str, Imported] = {}
    for sub in ast.walk(node):
        if isinstance(sub, ast.Import):
            for alias in sub.names:
                bound[alias.asname or alias.name.split(".")[0]] = Imported(alias.name, None, 0)
        elif isinstance(sub, ast.ImportFrom):
            for alias in sub.names:
                if alias.name != "*":
                    imported = Imported(sub.module or "", alias.name, sub.level)
                    bound[alias.asname or alias.name] = imported
    return bound


def _binds(statement: ast.stmt, name: str) -> bool:
    targets: list[ast.expr] = []
    if isinstance(statement, ast.Assign):
        targets = statement.targets
    elif isinstance(statement, (ast.AnnAssign, ast.AugAssign, ast.For, ast.AsyncFor)):
        targets = [statement.target]
    elif isinstance(statement, (ast.With, ast.AsyncWith)):
        targets = [item.optional_vars for item in statement.items if item.optional_vars]
    elif isinstance(statement, ast.ImportFrom):
        return any((a.asname or a.name) == name for a in statement.names)
    return any(
        isinstance(sub, ast.Name) and sub.id == name for t in targets for sub in ast.walk(t)
    )


def bindings(tree: ast.Module, name: str) -> list[ast.stmt]:
    """The module-level statements that bind ``name``: assignments (plain, annotated,
    augmented), ``for`` and ``with`` targets and ``from m import name``, also inside a
    top-level ``if`` or ``try``; in source order."""
    found: list[ast.stmt] = []
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        statement = pending.pop(0)
        if isinstance(statement, ast.If):
            pending[:0] = [*statement.body, *statement.orelse]
        elif isinstance(statement, ast.Try):
            blocks = [statement.body, *(h.body for h in statement.handlers)]
            pending[:0] = [s for block in (*blocks, statement.orelse) for s in block]
        elif _binds(statement, name):
            found.append(statement)
    return found
