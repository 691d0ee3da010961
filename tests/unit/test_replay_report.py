"""A replay's verdict rendered (report/replay.py): terminal lines and HTML, the first
divergence first, values escaped, a stored verdict rendering as a fresh one."""

from __future__ import annotations

import io
import json
import re

import numpy as np
from rich.console import Console

from pytest_rtgov.core.replay import compare, decide
from pytest_rtgov.core.replay_rules import ReplayRule
from pytest_rtgov.report.replay import (
    print_replay,
    render_html,
    render_replay_page,
    render_replay_section,
    render_terminal,
    replay_lines,
)
from tests.unit.test_replay_core import Arrays, cp, entry, record, ulps

BASE = np.linspace(0.5, 1.5, 6, dtype=np.float32).reshape(2, 3)


def _diverged(*, drift=(), allow=True, owner="t.py::test_<b>"):
    later = np.arange(3.0)
    rec = record(
        [entry(owner, [cp("logits", 0, BASE), cp("probs", 1, later), cp("gone", 2, later)])]
    )
    changed = ulps(BASE, 3, (1, 1))
    rep = record([entry(owner, [cp("logits", 0, changed), cp("probs", 1, later + 1)])])
    comparison = compare(
        rec, rep, load=Arrays(BASE, changed, later, later + 1),
        rules=[ReplayRule(checkpoint="logits", max_ulp=2, name="logits-ulp")],
    )
    return decide(comparison, drift, allow_env_drift=allow)


def test_terminal_lines_put_the_first_divergence_first():
    drift = [("env.OPENBLAS_NUM_THREADS", "1", "4")]
    lines = replay_lines(_diverged(drift=drift))
    assert lines[0] == "rtgov replay: diverged (exit 6)"
    assert lines[1] == "first divergence: test t.py::test_<b>"
    text = "\n".join(lines)
    for expected in [
        "checkpoint        logits (array), occurrence 0",
        "index             4 (flat), [1, 1]",
        "expected          " + str(BASE[1, 1]),
        "ULP               3 (max 3 over the array)",
        "mismatches        1 of 6 elements",
        "rule              logits-ulp",
        "candidate causes  env.OPENBLAS_NUM_THREADS (environment drift)",
        "downstream of it (2):",
        "  test t.py::test_<b> :: probs  diverged: values differ",
        "  test t.py::test_<b> :: gone  not reproduced: the replayed test did not produce it",
        "environment drift (allowed: --allow-env-drift):",
        "  env.OPENBLAS_NUM_THREADS: '1' -> '4'",
        "checkpoints: 0 identical, 0 within tolerance, 2 diverged, 0 new, 1 not reproduced",
    ]:
        assert expected in text, expected
    places = [text.index(t) for t in ("first divergence", "downstream", "environment drift (")]
    assert places == sorted(places)


def test_a_stored_verdict_renders_as_a_fresh_one_and_long_lists_are_cut():
    result = _diverged()
    stored = json.loads(json.dumps(result.to_dict()))
    assert replay_lines(stored) == replay_lines(result)
    cut = replay_lines(result, shown=1)
    assert "  ... and 1 more" in cut


def test_not_comparable_and_identical():
    drift = [("numpy", "2.0", "2.1")]
    lines = replay_lines(decide(None, drift, allow_env_drift=False))
    assert lines[0] == (
        "rtgov replay: not comparable (exit 8): the environment differs from the record: "
        "numpy: '2.0' vs '2.1'"
    )
    assert not any(line.startswith("first divergence") for line in lines)
    same = record([entry("t.py::test_a", [cp("x", 0, BASE)])])
    identical = decide(compare(same, same, load=Arrays()), [], allow_env_drift=False)
    assert replay_lines(identical) == [
        "rtgov replay: identical (exit 0)",
        "checkpoints: 1 identical, 0 within tolerance, 0 diverged, 0 new, 0 not reproduced",
    ]
    out = io.StringIO()
    print_replay(Console(file=out, width=200), identical)
    assert out.getvalue().splitlines()[0] == "rtgov replay: identical (exit 0)"


def test_html_section_escapes_and_orders_and_the_page_is_whole():
    result = _diverged(drift=[("gpu", "A100", "<H200>")])
    html = render_replay_section(result)
    assert html.lstrip().startswith('<section id="replay">')
    assert "<!DOCTYPE html>" not in html
    assert "t.py::test_&lt;b&gt;" in html and "test_<b>" not in html
    assert "&lt;H200&gt;" in html
    order = [html.index(f'id="{i}"') for i in
             ("replay-verdict", "first-divergence", "downstream", "drift", "replay-counts")]
    assert order == sorted(order)
    rows = re.findall(r'<th scope="row">([^<]+)</th>', html)
    assert rows[:6] == ["checkpoint", "index", "expected", "actual", "ULP", "mismatches"]
    page = render_replay_page(result, title="rtgov replay of <run>")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<title>rtgov replay of &lt;run&gt;: diverged (exit 6)</title>" in page
    assert html in page


def test_the_replay_leafs_summary_renders_with_its_facts():
    """``rtgov replay`` renders the summary it logs: the result plus the run, the replay,
    the code and the policy."""
    summary = {
        "run_id": "20261130-<x>",
        "replay_id": "r2",
        "at": "2026-11-30T18:00:00Z",
        "code": {"commit": "abc123", "how": "in place"},
        "selection": "all 3 tests",
        "policy_sha256": "ab" * 32,
        **_diverged().to_dict(),
    }
    assert render_terminal(summary) == "\n".join(replay_lines(_diverged()))
    page = render_html(summary)
    assert "<title>rtgov replay of run 20261130-&lt;x&gt;: diverged (exit 6)</title>" in page
    facts = re.search(r'<p id="replay-facts"[^>]*>(.*?)</p>', page).group(1)
    assert "abc123 in place" in facts and "sha256:abababababab…" in facts
    assert "all 3 tests" in facts
