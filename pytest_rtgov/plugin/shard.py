"""``--rtgov-shard I/N``: run only the tests of shard I of N.

Registered by :func:`register` from ``pytest_rtgov.plugin.pytest_configure`` only
when the option is given, so a session without it pays one ``getoption``. The module
is also a plugin on its own (``pytest -p pytest_rtgov.plugin.shard``).

Under pytest-xdist the controller does not collect; every worker collects the whole
suite and deselects here. The choice is a pure function of the node id
(:func:`pytest_rtgov.core.shard.in_shard`), so all workers keep the same tests, as
xdist requires, whatever order they collected them in.
"""

from __future__ import annotations

import sys

import pytest

from pytest_rtgov.core.shard import in_shard, parse_shard
from pytest_rtgov.errors import InvalidOptionError

__all__ = ["PLUGIN_NAME", "deselect", "register"]

PLUGIN_NAME = "rtgov-shard"
_SHARD_KEY = pytest.StashKey[tuple[int, int]]()


def register(config: pytest.Config) -> None:
    """Check ``--rtgov-shard`` and register this module's hooks when it is given.

    A bad value is a usage error (exit 4), raised here, in ``pytest_configure`` on the
    controller, before any xdist worker starts.
    """
    text = config.getoption("rtgov_shard", None)
    if text is None:
        return
    try:
        config.stash[_SHARD_KEY] = parse_shard(str(text))
    except InvalidOptionError as exc:
        raise pytest.UsageError(str(exc)) from None
    module = sys.modules[__name__]
    if not config.pluginmanager.is_registered(module):
        config.pluginmanager.register(module, PLUGIN_NAME)


def deselect(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep, in place, the items of this session's shard; report the others deselected."""
    shard = config.stash.get(_SHARD_KEY, None)
    if shard is None:
        return
    index, count = shard
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        (kept if in_shard(item.nodeid, index, count) else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def pytest_configure(config: pytest.Config) -> None:
    # Only reached when the module was loaded as a plugin (``-p``): register() is
    # idempotent, so loading it both ways is harmless.
    register(config)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # tryfirst: later hooks (the measuring plugin's marker checks) see only this shard.
    deselect(config, items)
