"""A stage's code digests: the normal form (``core/stage_code.py``) and the project code a
stage reaches, followed function by function (``store/stage_code.py``)."""

from __future__ import annotations

import functools
import importlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from pytest_rtgov.core.canonical import canonical_json
from pytest_rtgov.core.stage_code import find_definition, node_digest, referenced_names
from pytest_rtgov.store.stage_code import code_digests

REPO = Path(__file__).resolve().parents[2]

ORIGINAL = '''
import functools


def cached(fn):
    return functools.lru_cache(fn)


def train(x, lr=0.1):
    """Fit a line."""
    w = 0.0
    for _ in range(3):
        w = w - lr * (w - x)  # a step
    return w
'''


def digest(source: str, name: str = "train") -> str:
    return node_digest(find_definition(textwrap.dedent(source), name))


@pytest.mark.parametrize(
    "source",
    [
        # comments and blank lines
        ORIGINAL.replace("# a step", "# one gradient step\n        # (more comments)"),
        # whitespace and line wrapping
        ORIGINAL.replace("w = w - lr * (w - x)", "w = w - lr*(\n            w - x\n        )"),
        # indentation of the whole definition (nested one level in a class would change
        # its qualname; here only the width of the indent changes)
        ORIGINAL.replace("\n    ", "\n  ").replace("\n        ", "\n    "),
        # the docstring changed or removed
        ORIGINAL.replace('"""Fit a line."""', '"""Fit a line to x, three steps of gradient."""'),
        ORIGINAL.replace('    """Fit a line."""\n', ""),
        # a stage's own decorator (its params and seeds are keyed separately), any spelling
        ORIGINAL.replace("def train", "@stage(params={'lr': 0.5})\ndef train"),
        ORIGINAL.replace("def train", "@pytest_rtgov.stage(seeds={'a': 1})\ndef train"),
        ORIGINAL.replace("def train", "@stage\ndef train"),
        # another function of the module
        ORIGINAL.replace("lru_cache(fn)", "lru_cache(maxsize=None)(fn)"),
    ],
    ids=["comments", "wrapping", "indent", "docstring", "no-docstring", "stage-decorator",
         "dotted-stage-decorator", "bare-stage-decorator", "other"],
)
def test_layout_does_not_change_the_digest(source: str) -> None:
    assert digest(source) == digest(ORIGINAL)


@pytest.mark.parametrize(
    "source",
    [
        ORIGINAL.replace("w = 0.0", "w = 1.0"),  # a constant
        ORIGINAL.replace("lr=0.1", "lr=0.2"),  # a default
        ORIGINAL.replace("range(3)", "range(4)"),
        ORIGINAL.replace("w - lr * (w - x)", "w + lr * (x - w)"),  # same value, other code
        ORIGINAL.replace("    return w", "    w = w * 1\n    return w"),  # a statement
        ORIGINAL.replace("(x, lr=0.1)", "(x, lr=0.1, *, steps=3)"),  # the signature
        # any other decorator counts: it changes what the function does
        ORIGINAL.replace("def train", "@cached\ndef train"),
        ORIGINAL.replace("def train", "@functools.lru_cache(maxsize=8)\ndef train"),
        ORIGINAL.replace("def train", "@numba.jit(fastmath=True)\ndef train"),
    ],
    ids=["constant", "default", "range", "expression", "statement", "signature",
         "decorator", "lru-cache", "jit"],
)
def test_code_changes_change_the_digest(source: str) -> None:
    assert digest(source) != digest(ORIGINAL)


def test_a_decorator_argument_counts() -> None:
    jit = ORIGINAL.replace("def train", "@numba.jit(fastmath=True)\ndef train")
    assert digest(jit) != digest(jit.replace("fastmath=True", "fastmath=False"))
    staged = ORIGINAL.replace("def train", "@stage(params={'lr': 0.5})\n@cached\ndef train")
    assert digest(staged) == digest(ORIGINAL.replace("def train", "@cached\ndef train"))


def test_a_stage_decorator_names_nothing_other_decorators_do() -> None:
    source = "@stage(params={'lr': LR})\n@functools.cache\ndef f(x):\n    return x\n"
    node = find_definition(source, "f")
    assert node is not None
    assert referenced_names(node) == {("functools", "cache"), ("x",)}


def test_an_absent_definition_has_its_own_digest() -> None:
    assert find_definition(ORIGINAL, "missing") is None
    assert node_digest(None) != digest(ORIGINAL)


# -- following the project code a stage reaches ------------------------------------------

FILES = {
    "demo_pkg/__init__.py": "",
    "demo_pkg/helpers.py": '''
        import numpy as np

        SCALE = 3


        def scale(x):
            return x * SCALE


        def unrelated():
            return "not reached"


        def through_module(x):
            return np.sum(x) + 1
        ''',
    "demo_pkg/models.py": """
        class Model:
            def step(self, x):
                return _inner(x)


        def _inner(x):
            return x - 1


        DEFAULT = Model()
        """,
    "demo_pkg/config.py": """
        EPOCHS = 8
        LAYERS = (128, 64)
        """,
    "demo_top.py": """
        def top_helper(x):
            return -x
        """,
    "venv/lib/site-packages/vendored.py": """
        def vendored(x):
            return x
        """,
    "demo_pkg/chain.py": """
        import numpy as np

        from pytest_rtgov import stage


        @stage
        def upstream():
            return {"x": np.zeros(2)}


        def downstream(upstream):
            return upstream["x"] + 1
        """,
    "demo_pkg/lazy.py": """
        def lazy_helper(x):
            return x + 1
        """,
    "demo_pkg/local.py": """
        def pretrain_local(x):
            import json

            import demo_top
            import demo_pkg.config as cfg
            from demo_pkg.helpers import scale
            from demo_pkg.lazy import lazy_helper

            from . import models

            if x is None:
                from vendored import vendored

                return vendored(x)
            y = scale(x) + demo_top.top_helper(x) + cfg.EPOCHS + lazy_helper(x)
            return json.dumps(y + models.Model().step(x))
        """,
    "demo_pkg/cfgmod.py": """
        import functools
        from dataclasses import dataclass


        @dataclass(frozen=True)
        class Cfg:
            lr: float


        def step_fn(x, lr):
            return x * lr


        LR = 0.1
        CFG = Cfg(lr=0.1)
        OTHER: Cfg = Cfg(lr=LR * 2)
        TAGS = {"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"}
        FROZEN = frozenset(TAGS)
        STEP = functools.partial(step_fn, lr=0.5)


        def uses_cfg(x):
            return x * CFG.lr + OTHER.lr + len(TAGS) + len(FROZEN) + STEP(x)
        """,
    "demo_pkg/stage.py": """
        import numpy as np
        from numpy import mean

        import demo_pkg.helpers
        import demo_top
        from demo_pkg import models
        from demo_pkg.config import EPOCHS, LAYERS
        from demo_pkg.helpers import scale
        from demo_pkg.models import DEFAULT, Model
        from vendored import vendored


        def pretrain(x):
            y = scale(x) + demo_pkg.helpers.through_module(x) + demo_top.top_helper(x)
            model = Model()
            y = model.step(y) + models.Model().step(y) + DEFAULT.step(y)
            return vendored(np.asarray(y) * EPOCHS * len(LAYERS) + mean(x))
        """,
}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A small project in ``tmp_path``, importable; its modules are forgotten after."""
    for rel, text in FILES.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path / "venv" / "lib" / "site-packages"))
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield tmp_path
    for name in [n for n in sys.modules if n.split(".")[0] in ("demo_pkg", "demo_top", "vendored")]:
        del sys.modules[name]


def stage_module() -> ModuleType:
    return importlib.import_module("demo_pkg.stage")


def test_follows_every_kind_of_reference(project: Path) -> None:
    digests = code_digests([stage_module().pretrain], root=project)
    assert sorted(digests) == [
        "demo_pkg/helpers.py::SCALE=value",  # a module constant the helper uses
        "demo_pkg/helpers.py::scale",  # from m import f
        "demo_pkg/helpers.py::through_module",  # import m; m.f
        "demo_pkg/models.py::DEFAULT=binding",  # an instance: the statement binding it
        "demo_pkg/models.py::Model",  # a class, whole (its methods too)
        "demo_pkg/models.py::_inner",  # what the class's method calls
        "demo_pkg/stage.py::EPOCHS=value",  # constants, where the stage's module sees them
        "demo_pkg/stage.py::LAYERS=value",
        "demo_pkg/stage.py::pretrain",
        "demo_top.py::top_helper",  # a top-level module: import m; m.f
    ]
    for value in digests.values():
        assert len(value) == 64


def test_leaves_out_unrelated_installed_and_vendored_code(project: Path) -> None:
    names = " ".join(code_digests([stage_module().pretrain], root=project))
    assert "unrelated" not in names  # another function of a module the stage uses
    assert "numpy" not in names and "mean" not in names  # an installed package
    assert "vendored" not in names  # site-packages inside the project folder


def test_an_unrelated_edit_changes_nothing_a_helper_edit_changes_the_helper(
    project: Path,
) -> None:
    pretrain = stage_module().pretrain
    before = code_digests([pretrain], root=project)
    helpers = project / "demo_pkg" / "helpers.py"
    text = helpers.read_text()
    helpers.write_text(text.replace('"not reached"', '"edited"') + "\n# a comment\n")
    assert code_digests([pretrain], root=project) == before  # read from disk again
    helpers.write_text(text.replace("return x * SCALE", "return x * SCALE + 0"))
    after = code_digests([pretrain], root=project)
    assert {k for k in after if after[k] != before[k]} == {"demo_pkg/helpers.py::scale"}


def test_a_method_edit_changes_its_class(project: Path) -> None:
    pretrain = stage_module().pretrain
    before = code_digests([pretrain], root=project)
    models = project / "demo_pkg" / "models.py"
    models.write_text(models.read_text().replace("return _inner(x)", "return _inner(x) * 2"))
    after = code_digests([pretrain], root=project)
    assert {k for k in after if after[k] != before[k]} == {"demo_pkg/models.py::Model"}


def test_a_changed_constant_changes_its_value_digest(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = stage_module()
    before = code_digests([module.pretrain], root=project)
    monkeypatch.setattr(module, "EPOCHS", 9)
    after = code_digests([module.pretrain], root=project)
    assert {k for k in after if after[k] != before[k]} == {"demo_pkg/stage.py::EPOCHS=value"}


def test_a_file_that_no_longer_parses_is_a_syntax_error(project: Path) -> None:
    pretrain = stage_module().pretrain
    helpers = project / "demo_pkg" / "helpers.py"
    helpers.write_text(helpers.read_text() + "\ndef broken(:\n")
    with pytest.raises(SyntaxError):
        code_digests([pretrain], root=project)


def _uses_rtgov(value: object) -> bytes:
    return canonical_json(value)


def test_pytest_rtgov_itself_is_not_project_code() -> None:
    """In this repository pytest_rtgov lies under the root: it is still left out (its
    version, not its code, describes it)."""
    digests = code_digests([_uses_rtgov], root=REPO)
    assert list(digests) == ["tests/unit/test_stage_code.py::_uses_rtgov"]


def test_an_upstream_stage_named_in_the_code_is_not_followed(project: Path) -> None:
    """A stage's argument named like an upstream stage resolves, in its module's globals,
    to that stage's fixture: the upstream enters the key through its outputs (early
    cutoff), never through its code."""
    module = importlib.import_module("demo_pkg.chain")
    assert list(code_digests([module.downstream], root=project)) == [
        "demo_pkg/chain.py::downstream"
    ]


# -- imports inside the function, module-level bindings, sets, partials ---------------------


def test_imports_inside_the_function_are_followed(project: Path) -> None:
    assert "demo_pkg.lazy" not in sys.modules  # found on disk, imported: a project file
    module = importlib.import_module("demo_pkg.local")
    digests = code_digests([module.pretrain_local], root=project)
    assert "vendored" not in sys.modules  # an installed module is never imported for it
    assert sorted(digests) == [
        "demo_pkg/config.py::EPOCHS=value",  # import m as n; n.CONST
        "demo_pkg/helpers.py::SCALE=value",
        "demo_pkg/helpers.py::scale",  # from m import f
        "demo_pkg/lazy.py::lazy_helper",  # a module nothing had imported yet
        "demo_pkg/local.py::pretrain_local",
        "demo_pkg/models.py::Model",  # from . import m; m.C
        "demo_pkg/models.py::_inner",
        "demo_top.py::top_helper",  # import m; m.f
    ]
    helpers = project / "demo_pkg" / "helpers.py"
    helpers.write_text(helpers.read_text().replace("return x * SCALE", "return x * SCALE + 0"))
    after = code_digests([module.pretrain_local], root=project)
    assert {k for k in after if after[k] != digests[k]} == {"demo_pkg/helpers.py::scale"}


def _cfg_digests(project: Path) -> dict[str, str]:
    return code_digests([importlib.import_module("demo_pkg.cfgmod").uses_cfg], root=project)


def test_a_global_instance_counts_by_the_statement_that_binds_it(project: Path) -> None:
    before = _cfg_digests(project)
    assert {
        "demo_pkg/cfgmod.py::CFG=binding",
        "demo_pkg/cfgmod.py::OTHER=binding",
        "demo_pkg/cfgmod.py::Cfg",  # the instance's class, and what its statement names
        "demo_pkg/cfgmod.py::LR=value",  # followed from OTHER's statement
    } <= set(before)
    path = project / "demo_pkg" / "cfgmod.py"
    path.write_text(path.read_text().replace("CFG = Cfg(lr=0.1)", "CFG = Cfg(lr=0.2)"))
    after = _cfg_digests(project)
    assert {k for k in after if after[k] != before[k]} == {"demo_pkg/cfgmod.py::CFG=binding"}


def test_a_partial_counts_its_function_and_its_arguments(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _cfg_digests(project)
    assert {"demo_pkg/cfgmod.py::step_fn", "demo_pkg/cfgmod.py::STEP=partial"} <= set(before)
    module = importlib.import_module("demo_pkg.cfgmod")
    monkeypatch.setattr(module, "STEP", functools.partial(module.step_fn, lr=0.25))
    after = _cfg_digests(project)
    assert {k for k in after if after[k] != before[k]} == {"demo_pkg/cfgmod.py::STEP=partial"}
    path = project / "demo_pkg" / "cfgmod.py"
    path.write_text(path.read_text().replace("return x * lr", "return x * lr * 1"))
    again = _cfg_digests(project)
    assert {k for k in again if again[k] != after[k]} == {"demo_pkg/cfgmod.py::step_fn"}


_SEEDED = """
import json, sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
import demo_pkg.cfgmod
from pytest_rtgov.store.stage_code import code_digests
print(json.dumps(code_digests([demo_pkg.cfgmod.uses_cfg], root=Path(sys.argv[1]))))
"""


def test_a_set_digest_is_the_same_under_every_hash_seed(project: Path) -> None:
    """Sets of strings iterate in another order under another PYTHONHASHSEED: their
    digest is over the sorted reprs of their items."""
    found = []
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run([sys.executable, "-c", _SEEDED, str(project)], env=env,
                              capture_output=True, text=True, check=True, cwd=REPO)  # fmt: skip
        found.append(json.loads(done.stdout))
    assert "demo_pkg/cfgmod.py::TAGS=value" in found[0]
    assert "demo_pkg/cfgmod.py::FROZEN=value" in found[0]
    assert found[0] == found[1] == found[2]
