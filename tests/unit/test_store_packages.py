"""The store packages split by role: each ``__init__`` only re-exports its parts' names.

Code and tests import the public names from the package path (``store.ledger``,
``store.verify``, ...); these checks keep that path whole while the parts move.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import pytest

PACKAGES = [
    "pytest_rtgov.store.baselines",
    "pytest_rtgov.store.delta_index",
    "pytest_rtgov.store.keys",
    "pytest_rtgov.store.ledger",
    "pytest_rtgov.store.verify",
]


def parts(package: ModuleType) -> list[ModuleType]:
    return [
        importlib.import_module(f"{package.__name__}.{info.name}")
        for info in pkgutil.iter_modules(package.__path__)
    ]


@pytest.mark.parametrize("name", PACKAGES)
def test_a_store_package_re_exports_names_its_parts_define(name: str) -> None:
    package = importlib.import_module(name)
    assert hasattr(package, "__path__"), f"{name} is a package of modules by role"
    assert package.__all__, name
    for public in package.__all__:
        value = getattr(package, public)
        home = getattr(value, "__module__", None)
        if callable(value) and home is not None:
            assert home.startswith(name + "."), (
                f"{name}.{public} is defined in {home}: the package only re-exports"
            )


@pytest.mark.parametrize("name", PACKAGES)
def test_each_part_names_its_role_and_exports_what_it_lists(name: str) -> None:
    package = importlib.import_module(name)
    modules = parts(package)
    assert len(modules) >= 2, f"{name} is split into parts"
    for module in modules:
        assert module.__doc__ and module.__doc__.strip(), f"{module.__name__}: no docstring"
        for public in getattr(module, "__all__", []):
            assert hasattr(module, public), f"{module.__name__}.__all__ lists {public}"
