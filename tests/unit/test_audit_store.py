"""store/audit.py: the baseline files a view read, kept by digest and put back, give the
same view; this machine's local baseline is kept apart (``baseline_local``)."""

from __future__ import annotations

import json

from pytest_rtgov.core.canonical import pretty_json
from pytest_rtgov.core.fingerprint import fingerprint
from pytest_rtgov.store.audit import BASELINE, BASELINE_LOCAL, _view, keep_baseline, keep_gates
from pytest_rtgov.store.baselines import SCHEMA, BaselineStore
from pytest_rtgov.store.objects import ObjectStore

ENV = {"python": "3.11", "cpu": "test"}


def write(path, subjects, **extra):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(pretty_json({"schema": SCHEMA, "subjects": subjects, **extra}))


def test_a_local_baseline_is_kept_apart_and_the_view_comes_back_the_same(tmp_path):
    state = tmp_path / ".rtgov"
    store = BaselineStore(tmp_path / "baseline", local_dir=state / "baseline-local")
    fp = fingerprint(ENV)
    write(store.metrics_path, {"t.py::t": {"acc": [0.9]}})
    write(store.env_path("other"), {"t.py::t": {"wall_time": [9.0]}})  # another machine
    assert store.local is not None
    write(store.local.env_path(fp), {"t.py::t": {"wall_time": [0.5, 0.6]}})
    inputs = keep_baseline(state, store, ENV, local=True)
    assert set(inputs) == {BASELINE, BASELINE_LOCAL}
    objects = ObjectStore.of_state_dir(state)
    manifest = json.loads(objects.get(inputs[BASELINE]))
    assert list(manifest) == ["metrics.json"]  # the other fingerprint's file: a note only
    assert list(json.loads(objects.get(inputs[BASELINE_LOCAL]))) == [f"env-{fp}.json"]
    root = tmp_path / "audit"
    root.mkdir()
    findings: list = []
    view = _view("r", inputs, objects, root, ENV, findings)
    original = store.view(ENV)
    assert findings == [] and view is not None
    assert (view.metrics, view.measurements) == (original.metrics, original.measurements)
    # without the local baseline (signatures required): only the committed files
    assert set(keep_baseline(state, store, ENV, local=False)) == {BASELINE}


def test_a_manifest_naming_a_path_outside_is_a_finding(tmp_path):
    state = tmp_path / ".rtgov"
    objects = ObjectStore.of_state_dir(state)
    bad = objects.put(json.dumps({"../escape.json": objects.put(b"{}")}).encode())
    root = tmp_path / "audit"
    root.mkdir()
    findings: list = []
    assert _view("r", {BASELINE: bad}, objects, root, ENV, findings) is None
    assert "the manifest is not {file name: digest}" in str(findings[0])
    assert not (tmp_path / "escape.json").exists()


def test_the_gates_file_is_kept_by_its_exact_bytes(tmp_path):
    data = b"# a comment the parser drops\n[[gates]]\nname = 'g'\nmetric = 'wall_time'\n"
    digest = keep_gates(tmp_path, data)["gates"]
    assert ObjectStore.of_state_dir(tmp_path).get(digest) == data


def test_another_fingerprints_file_is_kept_for_the_note_a_new_result_gives(tmp_path):
    state = tmp_path / ".rtgov"
    store = BaselineStore(tmp_path / "baseline", local_dir=state / "baseline-local")
    write(store.metrics_path, {})
    write(store.env_path("other"), {}, environment={"python": "3.10", "cpu": "test"})
    inputs = keep_baseline(state, store, ENV, local=True)  # no local file either
    objects = ObjectStore.of_state_dir(state)
    assert list(json.loads(objects.get(inputs[BASELINE]))) == ["env-other.json", "metrics.json"]
    root = tmp_path / "audit"
    root.mkdir()
    view = _view("r", inputs, objects, root, ENV, [])
    assert view is not None and "env-other.json is not comparable" in view.fingerprint_note
    assert view.fingerprint_note == store.view(ENV).fingerprint_note


def test_the_local_baselines_path_in_a_note_is_the_one_the_record_says():
    import dataclasses

    from pytest_rtgov.core.subjects import BaselineView
    from pytest_rtgov.store.audit import machine_note
    from tests.unit.test_gates import run

    said = "measurements compared with this machine's local baseline /p/.rtgov/baseline-local/"
    said += "env-ab.json (not committed)"
    moved = BaselineView({}, {}, said.replace("/p/.rtgov", "/tmp/audit-x"))
    result = {"gate": "g", "subject": "s", "metric": "wall_time", "status": "new", "reason": said}
    record = dataclasses.replace(run(), gate_results=(result,))
    assert machine_note(moved, record).fingerprint_note == said
    assert machine_note(moved, run()) is moved  # the record says nothing: left as it is
