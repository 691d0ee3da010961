"""Issue 15: the stages where a user looks: the terminal summary, the HTML report (in a
browser too), the Markdown export, the experiment graph and its ``stages`` query.

A two-stage project (``prepare -> train``) gives real records. ``train`` adds the
``NOISE`` variable, which it does not declare, to its output: changing it under
``--rtgov-stage-recheck train`` is a nondeterminism finding.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pytest_rtgov.core.records import FixtureEntry, FixtureSetup, Sample
from pytest_rtgov.core.stage_graph import stage_history
from pytest_rtgov.report.stages import stage_counts, stage_graph, stage_rows
from tests.conftest import latest_record
from tests.plugin._cli import cli

CONFTEST = """
import os

import numpy as np

from pytest_rtgov import stage


@stage(params={"n": 8}, seeds={"data": 1})
def prepare(params, seeds):
    rng = np.random.default_rng(seeds["data"])
    return {"x": rng.standard_normal(params["n"])}


@stage(params={"lr": 0.5})
def train(prepare, params):
    noise = float(os.environ.get("NOISE", "0"))
    return {"w": prepare["x"] * params["lr"] + noise}, {"note": "tiny"}
"""

TESTS = """
def test_w(train):
    assert train["w"].shape == (8,)
"""

PLAIN = """
def test_plain():
    assert True
"""

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.delenv("NOISE", raising=False)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_stages=TESTS)
    return pytester


def _events(root: Path) -> dict[str, dict]:
    record = latest_record(root)
    return {
        s["stage"]["stage"]: s["stage"]
        for f in record["fixtures"]
        for s in f["setups"]
        if "stage" in s
    }


def _section(lines: list[str]) -> list[str]:
    """The stage section: its count line and the lines after it up to the ledger's."""
    plain = [ANSI.sub("", line) for line in lines]
    start = next(i for i, line in enumerate(plain) if line.startswith("rtgov stages:"))
    end = next(i for i in range(start + 1, len(plain)) if not plain[i].startswith("  "))
    return plain[start:end]


# -- terminal ------------------------------------------------------------------------------


def test_terminal_counts_and_one_line_per_stage_cold_then_warm(project):
    cold = project.runpytest("--rtgov", "-p", "no:randomly")
    assert cold.ret == 0
    section = _section(cold.outlines)
    assert section[0] == "rtgov stages: 0 hit, 2 executed (2 stored)"
    events = _events(project.path)
    shown = [line.split()[:2] for line in section[1:]]
    assert shown == [["prepare", "stored"], ["train", "stored"]]

    warm = project.runpytest("--rtgov", "-p", "no:randomly")
    assert warm.ret == 0
    section = _section(warm.outlines)
    assert section[0] == "rtgov stages: 2 hit, 0 executed"
    record = latest_record(project.path)
    walls = {
        s["stage"]["stage"]: s["sample"]["wall_ns"]
        for f in record["fixtures"]
        for s in f["setups"]
        if "stage" in s
    }
    for line, name in zip(section[1:], ("prepare", "train"), strict=True):
        fields = line.split()
        assert fields[:2] == [name, "hit"]
        # the time of the hit (the fixture setup's sample) and the key's first 12 hex
        assert fields[4:6] == ["key", events[name]["key"][:12]]
        assert float(fields[2]) > 0 and fields[3] in ("ns", "us", "ms", "s")
        assert walls[name] > 0
    # after the run line, before the ledger line
    plain = [ANSI.sub("", line) for line in warm.outlines]
    run_at = next(i for i, line in enumerate(plain) if line.startswith("rtgov: run "))
    assert plain[run_at + 1].startswith("rtgov stages:")
    assert plain[run_at + 4].startswith("rtgov: ledger ")

    quiet = project.runpytest("--rtgov", "-p", "no:randomly", "-q")
    assert "rtgov stages: 2 hit, 0 executed" in quiet.outlines
    assert not any(line.startswith("  prepare") for line in quiet.outlines)


def test_no_section_without_stages(pytester):
    pytester.makepyfile(test_plain=PLAIN)
    result = pytester.runpytest("--rtgov", "-p", "no:randomly")
    assert result.ret == 0
    assert not any("rtgov stages" in line for line in result.outlines)
    html = (pytester.path / ".rtgov" / "report.html").read_text()
    assert 'id="stages"' not in html


def test_a_refused_entry_is_red_and_says_why(project):
    assert project.runpytest("--rtgov", "-p", "no:randomly").ret == 0
    x_digest = _events(project.path)["prepare"]["outputs"]["x"]
    obj = project.path / ".rtgov" / "stages" / "objects" / x_digest[:2] / f"{x_digest}.npy"
    data = bytearray(obj.read_bytes())
    data[-1] ^= 0x01  # one flipped bit in the cached array
    obj.write_bytes(bytes(data))

    result = project.runpytest("--rtgov", "-p", "no:randomly", "--color=yes")
    events = _events(project.path)
    assert events["prepare"]["outcome"] == "refused"
    refused = next(line for line in result.outlines if "prepare" in line and "refused" in line)
    assert "\x1b[31m" in refused  # red, as rich renders it
    assert events["prepare"]["reason"] and ANSI.sub("", refused).rstrip().endswith(
        events["prepare"]["reason"][-30:]
    )
    count = next(line for line in result.outlines if "rtgov stages:" in line)
    assert "1 refused" in ANSI.sub("", count) and "\x1b[33m" in count  # yellow: not fatal


def test_a_nondeterminism_finding_is_yellow_and_fails_the_session(project, monkeypatch):
    assert project.runpytest("--rtgov", "-p", "no:randomly").ret == 0
    monkeypatch.setenv("NOISE", "1")
    result = project.runpytest(
        "--rtgov", "-p", "no:randomly", "--color=yes", "--rtgov-stage-recheck", "train"
    )
    assert result.ret == 6
    events = _events(project.path)
    assert events["train"]["outcome"] == "recheck" and events["train"]["finding"]
    finding = next(
        line for line in result.outlines if ANSI.sub("", line).startswith("    nondeterm")
    )
    assert "\x1b[33m" in finding
    count = ANSI.sub("", next(line for line in result.outlines if "rtgov stages:" in line))
    assert count == "rtgov stages: 1 hit, 1 executed (1 recheck), 1 nondeterminism finding"


# -- HTML report and Markdown export ------------------------------------------------------


def test_report_and_markdown_show_the_stage_graph(project):
    assert project.runpytest("--rtgov", "-p", "no:randomly").ret == 0
    out = project.path / "summary.md"
    result = project.runpytest("--rtgov", "-p", "no:randomly", f"--rtgov-export=markdown:{out}")
    assert result.ret == 0
    events = _events(project.path)
    html = (project.path / ".rtgov" / "report.html").read_text()
    assert '<h2 id="stages">Stages</h2>' in html and "2 hit, 0 executed" in html
    assert '<g class="stage-node hit" data-stage="prepare">' in html
    assert '<g class="stage-node hit" data-stage="train">' in html
    assert 'data-source="prepare" data-target="train"' in html
    assert events["train"]["key"][:12] in html
    assert "<link" not in html and "src=" not in html  # still self-contained

    text = out.read_text()
    assert "Stages: 2 hit, 0 executed." in text
    assert "| `train` | hit |" in text and f"`{events['train']['key'][:12]}`" in text


def test_the_stage_section_renders_in_a_browser(project, tmp_path):
    from selenium.webdriver.common.by import By

    from tests.plugin.test_report_browser import _driver

    browser = _driver()
    try:
        assert project.runpytest("--rtgov", "-p", "no:randomly").ret == 0  # stored
        report = project.path / ".rtgov" / "report.html"
        browser.get(report.as_uri())
        graph = browser.find_element(By.ID, "stage-graph")
        assert graph.is_displayed() and graph.size["width"] > 300
        nodes = browser.find_elements(By.CSS_SELECTOR, "#stage-graph g.stage-node")
        assert [n.get_attribute("data-stage") for n in nodes] == ["prepare", "train"]
        rect = nodes[0].find_element(By.TAG_NAME, "rect")
        assert rect.value_of_css_property("fill") == "rgb(221, 244, 255)"  # stored: blue
        left, right = (n.find_element(By.TAG_NAME, "rect").location["x"] for n in nodes)
        assert left < right  # upstream to the left
        rows = browser.find_elements(By.CSS_SELECTOR, "#stage-table tbody tr")
        assert [r.text.split()[:2] for r in rows] == [["prepare", "stored"], ["train", "stored"]]
    finally:
        browser.quit()


# -- the experiment graph --------------------------------------------------------------------


def test_graph_query_and_export_list_stage_nodes(project, tmp_path):
    pytest.importorskip("networkx")
    import networkx as nx

    assert project.runpytest("--rtgov", "-p", "no:randomly").ret == 0
    first = latest_record(project.path)["run_id"]
    assert project.runpytest("--rtgov", "-p", "no:randomly").ret == 0
    second = latest_record(project.path)["run_id"]
    events = _events(project.path)
    prepare = f"stage:prepare|{events['prepare']['key']}"
    train = f"stage:train|{events['train']['key']}"

    graph_path = tmp_path / "g.graphml"
    assert cli(project, "graph", "export", "-o", str(graph_path)) == 0
    graph = nx.read_graphml(graph_path, force_multigraph=True)
    stage_nodes = {n for n, d in graph.nodes(data=True) if d["kind"] == "stage"}
    assert stage_nodes == {prepare, train}
    assert graph.nodes[train]["name"] == "train"
    assert json.loads(graph.nodes[train]["outputs"]) == events["train"]["outputs"]
    assert graph.has_edge(train, prepare, key="derived_from")
    assert graph.has_edge(f"run:{first}", train, key="used_stage")
    assert graph.get_edge_data(f"run:{first}", train, key="used_stage")["outcome"] == "stored"
    assert graph.get_edge_data(f"run:{second}", train, key="used_stage")["outcome"] == "hit"
    assert graph.has_edge(train, f"run:{first}", key="produced_by")
    assert not graph.has_edge(train, f"run:{second}", key="produced_by")


def test_graph_query_stages_text_and_json(project, capsys):
    assert project.runpytest("--rtgov", "-p", "no:randomly").ret == 0
    assert project.runpytest("--rtgov", "-p", "no:randomly").ret == 0
    events = _events(project.path)
    capsys.readouterr()
    assert cli(project, "graph", "query", "stages", "train", "--format", "json") == 0
    (node,) = json.loads(capsys.readouterr().out)
    assert node["stage"] == "train" and node["key"] == events["train"]["key"]
    assert [u["outcome"] for u in node["uses"]] == ["stored", "hit"]
    assert node["derived_from"] == [f"stage:prepare|{events['prepare']['key']}"]
    assert len(node["produced_by"]) == 1
    assert cli(project, "graph", "query", "stages") == 0
    text = capsys.readouterr().out
    assert f"stage:train|{events['train']['key'][:12]}  used by 2 run(s)  derived from " in text
    assert cli(project, "graph", "query", "stages", "nope") == 3
    assert "no stage 'nope'" in capsys.readouterr().err
    assert cli(project, "show") == 0  # rtgov show: the same section as the session's
    shown = capsys.readouterr().out.splitlines()
    assert "rtgov stages: 2 hit, 0 executed" in shown
    assert any(line.split()[:2] == ["train", "hit"] for line in shown)


def test_under_xdist_each_worker_setup_is_a_line_naming_its_worker(project):
    pytest.importorskip("xdist")
    project.makepyfile(test_more=TESTS.replace("test_w", "test_w2"))
    result = project.runpytest("--rtgov", "-p", "no:randomly", "-n", "2")
    assert result.ret == 0
    record = latest_record(project.path)
    setups = [
        (s["stage"]["stage"], s["worker"], s["stage"]["outcome"])
        for f in record["fixtures"]
        for s in f["setups"]
        if "stage" in s
    ]
    section = _section(result.outlines)
    # one line per setup, each naming its worker: a stage computed once is a hit elsewhere
    assert [line.split()[:3] for line in section[1:]] == [
        [name, f"[{worker}]", outcome] for name, worker, outcome in setups
    ]
    stored = sum(1 for *_, outcome in setups if outcome == "stored")
    assert stored == 2  # prepare and train, once each
    assert section[0].startswith(f"rtgov stages: {len(setups) - 2} hit, 2 executed")


# -- pure pieces ----------------------------------------------------------------------------


def _setup(stage: str, outcome: str, upstream: list[str], worker: str = "main") -> FixtureEntry:
    event = {"stage": stage, "key": stage * 8, "outcome": outcome, "upstream": upstream}
    setup = FixtureSetup(worker, "t", "passed", Sample(wall_ns=1000, cpu_ns=1000), stage=event)
    return FixtureEntry("", stage, "session", setups=(setup,))


def test_stage_graph_puts_each_stage_one_column_after_its_deepest_upstream():
    class Record:
        fixtures = (
            _setup("a", "hit", []),
            _setup("b", "stored", ["a"]),
            _setup("c", "refused", ["a"]),
            _setup("d", "miss", ["b", "c"]),
            _setup("e", "recheck", ["a", "d"]),
        )

    rows = stage_rows(Record())  # type: ignore[arg-type]
    graph = stage_graph(rows)
    assert graph is not None
    xs = {n["name"]: n["x"] for n in graph["nodes"]}
    assert xs["a"] < xs["b"] == xs["c"] < xs["d"]
    assert xs["d"] < xs["e"]
    paths = {(e["source"], e["target"]): e["d"] for e in graph["edges"]}
    assert set(paths) == {("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("a", "e"), ("d", "e")}
    # the next column: a straight line; further: along the lane under the row, so the
    # edge a -> e does not run through the boxes of b and d, which share a's row
    assert paths[("a", "b")].count("L") == 1 and "V" not in paths[("a", "b")]
    lane = int(paths[("a", "e")].split("V")[1].split()[0])
    ys = {n["name"]: n["y"] for n in graph["nodes"]}
    assert ys["a"] + graph["node_h"] < lane < ys["a"] + 66
    assert stage_counts(rows) == "1 hit, 4 executed (1 stored, 1 recheck, 1 miss, 1 refused)"
    assert stage_graph([]) is None


def test_stage_history_folds_workers_and_links_upstream_within_a_run():
    leaves = [
        {"run_id": "r1", "stage": "a", "key": "k1", "outcome": "stored", "worker": "gw0",
         "upstream": [], "outputs": {"x": "d1"}},
        {"run_id": "r1", "stage": "a", "key": "k1", "outcome": "hit", "worker": "gw1",
         "upstream": [], "outputs": {"x": "d1"}},
        {"run_id": "r1", "stage": "b", "key": "k2", "outcome": "stored", "worker": "gw0",
         "upstream": ["a"], "outputs": {"y": "d2"}},
        {"run_id": "r2", "stage": "a", "key": "k3", "outcome": "stored", "worker": "main",
         "upstream": [], "outputs": {"x": "d3"}},
        {"run_id": "gone", "stage": "a", "key": "k9", "outcome": "hit", "upstream": []},
    ]
    nodes = {n.id: n for n in stage_history(leaves, {"r1": 0, "r2": 1})}
    assert set(nodes) == {"stage:a|k1", "stage:b|k2", "stage:a|k3"}
    (use,) = nodes["stage:a|k1"].uses
    assert use == {"run_id": "r1", "outcome": "stored, hit", "reason": "", "worker": "gw0, gw1"}
    assert nodes["stage:a|k1"].produced_by == ["r1"]
    assert nodes["stage:b|k2"].derived_from == ["stage:a|k1"]  # r1's a, not r2's
