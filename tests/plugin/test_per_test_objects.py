"""The role plugins that run per test keep their state in slots, not an instance dict.

pluggy's ``dir(plugin)`` at registration turns a small instance's attributes into a
split ``__dict__``, and CPython 3.11 then cannot specialize attribute access on it:
every ``self.x`` in the measuring path took the generic lookup (thousands of
instructions per test, docs/benchmarks.md "Per-test overhead of the plugin").
"""

from __future__ import annotations

import pytest

SUITE = """
import pytest

PER_TEST_HOOKS = {
    "pytest_runtest_protocol", "pytest_runtest_setup", "pytest_runtest_call",
    "pytest_runtest_teardown", "pytest_runtest_makereport", "pytest_runtest_logreport",
    "pytest_fixture_setup", "pytest_pyfunc_call",
}

def test_per_test_plugins_have_no_instance_dict(request):
    manager = request.config.pluginmanager
    per_test = {
        name: plugin
        for name, plugin in manager.list_name_plugin()
        if name.startswith("rtgov-") and PER_TEST_HOOKS & set(dir(plugin))
    }
    assert {"rtgov-capture", "rtgov-collector"} <= set(per_test)
    with_dict = sorted(name for name, plugin in per_test.items() if hasattr(plugin, "__dict__"))
    assert with_dict == []
"""


def test_per_test_role_plugins_use_slots(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_objects=SUITE)
    result = pytester.runpytest("--rtgov", "--rtgov-memory=off", "-p", "no:randomly")
    result.assert_outcomes(passed=1)
