"""A feature whose extra is not installed: a usage error naming the extra, no traceback.

The missing module is simulated with ``sys.modules[name] = None`` (an import of it then
raises ImportError), in-process, as a user without the extra would meet it.
"""

from __future__ import annotations

import sys

import pytest

from tests.plugin._cli import cli

TEST = "def test_one():\n    assert True\n"


@pytest.fixture
def without(monkeypatch):
    """``without("memray")``: the module cannot be imported while the test runs."""

    def hide(*names: str) -> None:
        for name in names:
            monkeypatch.setitem(sys.modules, name, None)

    return hide


def test_memray_mode_without_memray_names_the_extra(pytester, without):
    without("memray")
    pytester.makepyfile(test_a=TEST)
    result = pytester.runpytest("--rtgov", "--rtgov-memory", "memray")
    assert result.ret == 4
    err = result.stderr.str()
    assert "--rtgov-memory memray needs memray" in err
    assert "pip install 'pytest-rtgov[memray]'" in err
    assert "Traceback" not in err
    result.stdout.no_fnmatch_line("*1 passed*")  # before any test ran


def test_default_memory_mode_needs_no_memray(pytester, without):
    without("memray")
    pytester.makepyfile(test_a=TEST)
    assert pytester.runpytest("--rtgov").ret == 0


@pytest.mark.parametrize(
    ("fmt", "hidden", "module"),
    [
        ("prometheus", ("prometheus_client",), "prometheus_client"),
        ("otlp", ("opentelemetry", "opentelemetry.proto"), "opentelemetry.proto"),
        ("otlp", ("google.protobuf",), "google.protobuf"),
    ],
)
def test_export_option_without_its_extra_is_a_usage_error(
    pytester, without, fmt, hidden, module
):
    without(*hidden)
    pytester.makepyfile(test_a=TEST)
    result = pytester.runpytest("--rtgov", "--rtgov-export", f"{fmt}:out.txt")
    assert result.ret == 4
    assert (
        f"--rtgov-export {fmt}:out.txt: the {fmt} export needs {module}, an optional "
        "dependency that is not installed: pip install 'pytest-rtgov[exporters]'"
    ) in result.stderr.str()
    assert not (pytester.path / "out.txt").exists()


def test_exports_of_the_core_install_need_no_extra(pytester, without):
    without("prometheus_client", "opentelemetry", "google.protobuf")
    pytester.makepyfile(test_a=TEST)
    args = [f"--rtgov-export={fmt}:out.{fmt}" for fmt in ("json", "junit", "markdown")]
    assert pytester.runpytest("--rtgov", *args).ret == 0
    assert all((pytester.path / f"out.{fmt}").stat().st_size for fmt in ("json", "junit"))


@pytest.mark.parametrize("fmt", ["prometheus", "otlp"])
def test_rtgov_export_without_the_extra_exits_2_with_the_message(pytester, without, capsys, fmt):
    pytester.makepyfile(test_a=TEST)
    assert pytester.runpytest("--rtgov").ret == 0
    capsys.readouterr()
    without("prometheus_client", "opentelemetry", "google.protobuf")
    assert cli(pytester, "export", "--format", fmt) == 2
    out, err = capsys.readouterr()
    assert "pip install 'pytest-rtgov[exporters]'" in err
    assert f"the {fmt} export needs" in err
    assert "Traceback" not in err
    assert out == ""
    assert cli(pytester, "export", "--format", "json") == 0  # the core formats still work


def test_rtgov_graph_export_without_networkx_names_the_graph_extra(pytester, without, capsys):
    """The graph queries read the delta index (no networkx); only the export builds it."""
    pytester.makepyfile(test_a=TEST)
    assert pytester.runpytest("--rtgov").ret == 0
    capsys.readouterr()
    without("networkx")
    assert cli(pytester, "graph", "query", "top-regressions") == 0
    capsys.readouterr()
    assert cli(pytester, "graph", "export", "--format", "json", "-o", "g.json") == 2
    err = capsys.readouterr().err
    assert "rtgov graph export needs networkx" in err
    assert "pip install 'pytest-rtgov[graph]'" in err
    assert "Traceback" not in err
    assert not (pytester.path / "g.json").exists()
