"""Delta index, comparisons, provenance and the experiment graph (pure core), and the
index's incremental upkeep from the ledger (store)."""

from __future__ import annotations

import dataclasses
import io
import json
import math
from pathlib import Path

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_rtgov.core.compare import compare_values
from pytest_rtgov.core.delta_index import (
    BaselineEvent,
    DeltaIndex,
    Observation,
    RunInfo,
    observations_of,
    quartiles,
    run_info,
)
from pytest_rtgov.core.graph import EDGE_KINDS, NODE_KINDS, build_graph
from pytest_rtgov.core.keys import generate_signer
from pytest_rtgov.core.ledger_records import baseline_refresh_leaf, run_leaves
from pytest_rtgov.core.provenance import comparability, provenance
from pytest_rtgov.core.records import RunRecord
from pytest_rtgov.store.delta_index import DeltaIndexStore
from pytest_rtgov.store.ledger import Ledger, append_session

RECORD = RunRecord.from_dict(
    json.loads((Path(__file__).parents[2] / "fixtures/records/run-v1.json").read_text())
)


def info(i: int, commit: str = "", status: str = "passed", dirty: bool = False) -> RunInfo:
    return RunInfo(
        run_id=f"run{i:05d}",
        started_at=f"2026-11-{i % 28 + 1:02d}",
        commit=commit or f"{i:040x}",
        branch="main",
        dirty=dirty,
        diff_sha256="ab" * 32 if dirty else "",
        fingerprint="fp",
        backend="numpy",
        status=status,
        exit_status=0,
    )


def test_quartiles_match_numpy():
    import numpy as np

    values = [5.0, 1.0, 3.0, 2.0, 8.0, 13.0, 4.0]
    assert quartiles(values) == pytest.approx(
        (np.median(values), np.percentile(values, 25), np.percentile(values, 75))
    )


def test_observations_of_a_record_cover_every_subject_metric_once():
    obs = observations_of(RECORD)
    keys = [(o.subject, o.metric) for o in obs]
    assert keys == sorted(set(keys))
    softmax = next(o for o in obs if o.subject.endswith("test_softmax") and o.metric == "wall_time")
    test = next(t for t in RECORD.tests if t.nodeid.endswith("test_softmax"))
    measured = sorted(s.wall_ns / 1e9 for s in test.samples if not s.warmup and s.completed)
    assert softmax.n == len(measured)
    assert softmax.value == pytest.approx(measured[len(measured) // 2])
    digest = next(o for o in obs if o.metric == "dataset_digest")
    assert digest.text.startswith("sha256:") and math.isnan(digest.value)


def test_provenance_names_seeds_datasets_and_git_state():
    env = {
        **RECORD.environment,
        "git.commit": "c" * 40,
        "git.dirty": "true",
        "git.diff_sha256": "d" * 64,
    }
    record = dataclasses.replace(RECORD, environment=env)
    prov = provenance(record)
    assert prov["git"] == {"commit": "c" * 40, "branch": "", "dirty": True, "diff_sha256": "d" * 64}
    assert prov["seeds"] == {"data_seed": 20261122.0}
    assert list(prov["dataset_digests"]) == ["dataset_digest"]
    assert comparability(prov, prov) == []
    other = {**prov, "backend": "cupy", "seeds": {"data_seed": 1.0}}
    assert comparability(prov, other) == [
        "backend numpy vs cupy",
        "seed data_seed: 20261122.0 vs 1.0",
    ]


def test_compare_values_judges_noise_digests_and_missing_rows():
    a = {
        ("k", "wall_time"): (1.0, 0.9, 1.1, 7),
        ("k", "peak_memory"): (100.0, 100.0, 100.0, 1),
        ("f", "wall_time"): (1.0, 1.0, 1.0, 1),
        ("t", "digest"): ("sha256:aa", math.nan, math.nan, 1),
        ("t", "gone"): (1.0, 1.0, 1.0, 1),
    }
    b = {
        ("k", "wall_time"): (1.08, 1.0, 1.2, 7),  # +8%: under the 10% threshold
        ("k", "peak_memory"): (150.0, 150.0, 150.0, 1),  # memory: judged on one sample
        ("f", "wall_time"): (3.0, 3.0, 3.0, 1),  # one sample of time: not judged
        ("t", "digest"): ("sha256:bb", math.nan, math.nan, 1),
        ("t", "new"): (2.0, 2.0, 2.0, 1),
    }
    rows = {(r.subject, r.metric): r for r in compare_values(a, b)}
    assert not rows[("k", "wall_time")].changed
    assert rows[("k", "peak_memory")].changed
    assert not rows[("f", "wall_time")].changed and "not judged" in rows[("f", "wall_time")].why
    assert rows[("t", "digest")].changed
    assert rows[("t", "gone")].why == "only in A" and rows[("t", "new")].why == "only in B"

    def kernel_row(other: tuple) -> object:
        only = {("k", "wall_time"): a[("k", "wall_time")]}
        return compare_values(only, {("k", "wall_time"): other})[0]

    assert kernel_row((1.5, 1.45, 1.6, 7)).changed
    assert not kernel_row((1.2, 0.8, 1.5, 7)).changed  # +20% but the IQRs overlap


def _history(values: list[float], verdicts: list[str]) -> DeltaIndex:
    index = DeltaIndex()
    for i, (value, verdict) in enumerate(zip(values, verdicts, strict=True)):
        index.add_run(
            info(i),
            [
                Observation(
                    "t::k",
                    "wall_time",
                    value,
                    value,
                    value,
                    base=1.0,
                    verdict=verdict,
                    gate="g",
                    n=7,
                ),
                Observation("t::acc", "val_accuracy", 0.9, 0.9, 0.9),
            ],
        )
    return index


def test_first_regression_finds_the_start_of_the_current_bad_streak():
    index = _history(
        [1.0, 1.3, 1.0, 1.0, 1.4, 1.5], ["pass", "breach", "pass", "pass", "breach", "breach"]
    )
    found = index.first_regression("t::k", "wall_time")
    assert found["first_bad"].run_id == "run00004"
    assert found["last_good"].run_id == "run00003"
    assert found["still_bad"] and found["bad_runs"] == 2
    assert index.first_regression("t::acc", "val_accuracy") is None
    by_threshold = index.first_regression("t::k", "wall_time", threshold_pct=35)
    assert by_threshold["first_bad"].run_id == "run00004"


def test_series_and_top_regressions():
    index = _history([1.0, 1.1, 2.0], ["pass", "pass", "breach"])
    series = index.series("t::k", "wall_time")
    assert [(i.run_id, v, verdict) for i, v, verdict in series] == [
        ("run00000", 1.0, "pass"),
        ("run00001", 1.1, "pass"),
        ("run00002", 2.0, "breach"),
    ]
    top = index.top_regressions("run00002")
    assert top[0]["subject"] == "t::k" and top[0]["relative"] == pytest.approx(1.0)
    assert index.top_regressions("run00000") == []


@settings(max_examples=25, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=40))
def test_first_regression_agrees_with_a_plain_loop(bad):
    index = _history([2.0 if b else 1.0 for b in bad], ["breach" if b else "pass" for b in bad])
    found = index.first_regression("t::k", "wall_time")
    if not any(bad):
        assert found is None
        return
    last = max(i for i, b in enumerate(bad) if b)
    start = last
    while start > 0 and bad[start - 1]:
        start -= 1
    assert found["first_bad"].run_id == f"run{start:05d}"
    assert (found["last_good"] is None) == (start == 0)


def test_graph_is_deterministic_and_has_every_kind():
    def build() -> nx.MultiDiGraph:
        index = DeltaIndex()
        index.add_baseline(
            BaselineEvent(1, 3, "2026-11-01", "ci", "first", "", "fp", 4, "sha256:e")
        )
        gated = dataclasses.replace(RECORD, verdict={"status": "passed"})
        index.add_record(gated, leaf_index=10)
        index.add_baseline(
            BaselineEvent(2, 20, "2026-11-02", "ci", "refresh", RECORD.run_id, "fp", 2, "sha256:f")
        )
        return build_graph(index, observations_for=[RECORD.run_id])

    one, two = build(), build()
    assert list(one.nodes(data=True)) == list(two.nodes(data=True))
    assert list(one.edges(keys=True, data=True)) == list(two.edges(keys=True, data=True))
    kinds = {d["kind"] for _, d in one.nodes(data=True)}
    # the fixture record has no git and no stages (stage nodes: tests/plugin/test_stages_views.py)
    assert kinds >= set(NODE_KINDS) - {"commit", "artifact", "stage"}
    assert {d["kind"] for *_, d in one.edges(data=True)} <= set(EDGE_KINDS)
    assert one.has_edge("baseline:2", "baseline:1", key="derived_from")
    assert one.has_edge(f"run:{RECORD.run_id}", "baseline:1", key="compared_against")
    buffers = []
    for graph in (one, two):
        buf = io.BytesIO()
        nx.write_graphml(graph, buf)
        buffers.append(buf.getvalue())
    assert buffers[0] == buffers[1]
    back = nx.read_graphml(io.BytesIO(buffers[0]), force_multigraph=True)
    assert back.number_of_nodes() == one.number_of_nodes()
    assert back.number_of_edges() == one.number_of_edges()


def test_run_info_reads_the_verdict_and_fingerprint():
    got = run_info(RECORD)
    assert got.run_id == RECORD.run_id and got.code == "(no git)"
    assert got.status == (RECORD.verdict or {}).get("status", "recorded")


SIGNER = generate_signer("test.example/history")


def _append(state: Path, record: RunRecord) -> None:
    append_session(
        Ledger(state / "ledger"), run_leaves(record), signer=SIGNER, origin="t/o", created_at="x"
    )


def test_the_index_follows_the_ledger_incrementally_and_rebuilds_when_it_changes(tmp_path):
    state = tmp_path / "state"
    _append(state, RECORD)
    store = DeltaIndexStore(state)
    assert [r.run_id for r in store.load().runs] == [RECORD.run_id]
    second = dataclasses.replace(RECORD, run_id="20261122T999999Z-second")
    _append(state, second)
    append_session(
        Ledger(state / "ledger"),
        [
            baseline_refresh_leaf(
                {
                    "at": "t",
                    "who": "w",
                    "reason": "r",
                    "run_id": second.run_id,
                    "fingerprint": "fp",
                    "changes": [],
                },
                seal_sha256="sha256:x",
            )
        ],
        signer=SIGNER,
        origin="t/o",
        created_at="x",
    )
    index = store.load()
    assert [r.run_id for r in index.runs] == [RECORD.run_id, second.run_id]
    assert [b.run_id for b in index.baselines] == [second.run_id]
    reloaded = DeltaIndexStore(state).load(update=False)
    assert reloaded.rows == index.rows
    assert repr(reloaded.run_values(second.run_id)) == repr(index.run_values(second.run_id))
    # A ledger replaced underneath the index: the index rebuilds from it.
    (state / "ledger").rename(tmp_path / "old-ledger")
    _append(state, second)
    assert [r.run_id for r in DeltaIndexStore(state).load().runs] == [second.run_id]


def test_runs_without_gates_do_not_break_a_streak():
    index = _history(
        [1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0],
        ["pass", "pass", "breach", "breach", "", "breach", "breach"],
    )
    found = index.first_regression("t::k", "wall_time")
    assert found["first_bad"].run_id == "run00002"
    assert found["last_good"].run_id == "run00001"
    assert found["bad_runs"] == 4


def _trust_signer():
    from pytest_rtgov.store.keys import Trust

    return Trust(keyring=(SIGNER.verifier(),), local=(), keyring_path=None, required=False)


def _dump(state: Path) -> list[str]:
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(state / "index" / "index.sqlite3")) as conn:
        return list(conn.iterdump())


@settings(max_examples=12, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["run", "baseline"]), st.sampled_from(["none", "load", "mem"])),
        min_size=1,
        max_size=6,
    ),
    st.booleans(),
)
def test_the_incremental_index_equals_a_rebuild(steps, signed):
    """Any sequence of sessions and baseline refreshes, with the index loaded after
    some of them (from the ledger, or from memory as a session's report does), ends
    with the very index a rebuild from the ledger makes."""
    import shutil
    import tempfile

    from pytest_rtgov.store.delta_index import Appended, NoKeys

    trust = _trust_signer() if signed else NoKeys()
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        ledger = Ledger(state / "ledger")
        for i, (kind, upkeep) in enumerate(steps):
            if kind == "run":
                record = dataclasses.replace(RECORD, run_id=f"20261122T{i:06d}Z-step")
                leaves = run_leaves(record)
            else:
                refresh = {"at": f"t{i}", "who": "w", "reason": "r", "run_id": "", "changes": []}
                leaves = [baseline_refresh_leaf(refresh, seal_sha256=f"sha256:{i}")]
            result = append_session(
                ledger, leaves, signer=SIGNER, origin="t/o", created_at="x", fsync_each=False
            )
            assert result is not None
            store = DeltaIndexStore(state, trust=trust)
            if upkeep == "load":
                store.load()
            elif upkeep == "mem" and kind == "run":
                store.load(appended=Appended(record, leaves, result.first_index))
        incremental = DeltaIndexStore(state, trust=trust).load()
        kept = _dump(state)
        copy = Path(tmp) / "copy"
        shutil.copytree(state / "ledger", copy / "ledger")
        rebuilt = DeltaIndexStore(copy, trust=trust).rebuild()
        assert _dump(copy) == kept
        assert [r.run_id for r in rebuilt.runs] == [r.run_id for r in incremental.runs]
        assert rebuilt.rows == incremental.rows
        assert [b.to_dict() for b in rebuilt.baselines] == [
            b.to_dict() for b in incremental.baselines
        ]


def test_an_index_with_no_ledger_vouches_for_nothing(tmp_path):
    """With the ledger gone, the saved index is not used (nothing to check it
    against) and not overwritten either."""
    state = tmp_path / "state"
    _append(state, RECORD)
    assert len(DeltaIndexStore(state).load().runs) == 1
    saved = (state / "index" / "index.sqlite3").read_bytes()
    (state / "ledger").rename(tmp_path / "elsewhere")
    assert DeltaIndexStore(state).load().runs == []
    assert (state / "index" / "index.sqlite3").read_bytes() == saved


def test_a_forged_digest_cannot_make_a_query_index_out_of_range(tmp_path):
    """Rows whose ids point outside the tables are refused even when the digests were
    recomputed to match them: the index is rebuilt, never read out of range."""
    import sqlite3
    from contextlib import closing

    import numpy as np

    from pytest_rtgov.store.delta_index import codec as store_history

    state = tmp_path / "state"
    _append(state, RECORD)
    expected = DeltaIndexStore(state).load()
    path = state / "index" / "index.sqlite3"
    with closing(sqlite3.connect(path)) as conn:
        blob = conn.execute("SELECT rows FROM runs WHERE pos = 0").fetchone()[0]
        rows = np.frombuffer(blob, dtype=store_history.ROW_DTYPE).copy()
        rows["key"] = 10_000
        info = conn.execute("SELECT info FROM runs WHERE pos = 0").fetchone()[0]
        meta = json.loads(conn.execute("SELECT value FROM meta").fetchone()[0])
        meta["runs_chain"] = store_history._chain(
            store_history._EMPTY_CHAIN, info.encode(), rows.tobytes()
        )
        meta["content_sha256"] = store_history._content_digest(meta)
        conn.execute("UPDATE runs SET rows = ? WHERE pos = 0", (rows.tobytes(),))
        conn.execute("UPDATE meta SET value = ?", (json.dumps(meta),))
        conn.commit()
    got = DeltaIndexStore(state).load()
    assert repr(got.run_values(RECORD.run_id)) == repr(expected.run_values(RECORD.run_id))


def test_the_core_delta_index_package_is_a_facade_over_its_parts():
    import importlib
    import pkgutil

    import pytest_rtgov.core.delta_index as package

    parts = [
        importlib.import_module(f"{package.__name__}.{info.name}")
        for info in pkgutil.iter_modules(package.__path__)
    ]
    assert {p.__name__.rsplit(".", 1)[1] for p in parts} == {"columns", "observations"}
    for part in parts:
        assert part.__doc__ and part.__doc__.strip(), part.__name__
    for name in package.__all__:
        value = getattr(package, name)
        home = getattr(value, "__module__", None)
        if callable(value) and home is not None:
            assert home.startswith(package.__name__ + "."), f"{name} is defined in {home}"
    # Every public name of the parts is importable from the package path.
    assert {n for p in parts for n in p.__all__} == set(package.__all__)
