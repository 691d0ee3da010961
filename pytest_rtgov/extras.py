"""Optional dependencies (the package's extras): import one, or fail with a usage error
that names the extra to install.

The core install carries what gating needs; a feature that needs more asks for it here
when it is used, so a missing extra is a message, never a traceback (docs/usage.md
"Install"). Apart from the floors, like :mod:`pytest_rtgov.errors`: any floor uses it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from pytest_rtgov.errors import InvalidOptionError

__all__ = ["MissingExtraError", "require"]


class MissingExtraError(InvalidOptionError):
    """A feature needs an optional dependency that is not installed (a usage error: exit 4
    in a pytest session, 2 from the ``rtgov`` command)."""


def require(module: str, *, extra: str, feature: str) -> ModuleType:
    """Import ``module``, or raise :class:`MissingExtraError` naming ``extra``.

    >>> require("math", extra="none", feature="arithmetic").__name__
    'math'
    >>> require("no_such_module_here", extra="memray", feature="--rtgov-memory memray")
    Traceback (most recent call last):
    ...
    pytest_rtgov.extras.MissingExtraError: --rtgov-memory memray needs no_such_module_here, \
an optional dependency that is not installed: pip install 'pytest-rtgov[memray]'
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(
            f"{feature} needs {module}, an optional dependency that is not installed: "
            f"pip install 'pytest-rtgov[{extra}]'"
        ) from None
