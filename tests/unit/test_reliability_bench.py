"""The reliability bench's own pieces, and a smoke run of the harness with a few trials."""

from __future__ import annotations

import importlib.util
import json
import random
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

from pytest_rtgov.store.ledger import encode_frame

BENCH = Path(__file__).resolve().parents[2] / "benches" / "reliability.py"


@pytest.fixture(scope="module")
def rel() -> ModuleType:
    spec = importlib.util.spec_from_file_location("reliability_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_its_frames_are_the_ledgers_frames(rel):
    payloads = [b'{"kind":"ledger"}', b"x" * 300, b'{"a":1}']
    data = rel.MAGIC + b"".join(encode_frame(p) for p in payloads)
    frames, tail = rel.parse_log(data)
    assert [f.payload for f in frames] == payloads
    assert tail == b""
    assert [rel.make_frame(p) for p in payloads] == [encode_frame(p) for p in payloads]


def test_the_parser_stops_at_a_bad_or_torn_frame(rel):
    good = [encode_frame(b"a" * 10), encode_frame(b"b" * 10)]
    flipped = bytearray(rel.MAGIC + b"".join(good))
    flipped[-1] ^= 1
    frames, tail = rel.parse_log(bytes(flipped))
    assert len(frames) == 1 and tail == good[1][:-1] + bytes([good[1][-1] ^ 1])
    frames, tail = rel.parse_log(rel.MAGIC + good[0] + good[1][:20])
    assert len(frames) == 1 and tail == good[1][:20]
    assert rel.parse_log(b"not a ledger") == ([], b"not a ledger")


def test_flip_and_truncate_change_the_file_and_say_how(rel, tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    what = rel.flip(path, random.Random(1))
    assert path.read_bytes() != b"0123456789" and len(path.read_bytes()) == 10
    assert what.startswith("bit ")
    rel.truncate(path, random.Random(1))
    assert len(path.read_bytes()) < 10


def test_first_line_prefers_the_message(rel):
    out = "==== FAILURES ====\nE   ModuleNotFoundError: No module named 'x'\n1 failed"
    assert rel.first_line(out) == "E   ModuleNotFoundError: No module named 'x'"
    assert rel.first_line("a\nrtgov verify: FAILED: log: leaf 3\n").startswith("rtgov verify")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_smoke_run_writes_every_figure(rel, tmp_path):
    out = tmp_path / "rel.json"
    crash = 1 if shutil.which("strace") else 0
    assert rel.main(["--quick", "--kinds", "latest", "--crash", str(crash),
                     "--concurrent", "1", "--out", str(out)]) == 0  # fmt: skip
    result = json.loads(out.read_text())
    assert result["controls"]["ok"] is True
    latest = result["tamper"]["by_kind"]["latest"]
    outcomes = ("detected_by_verify", "detected_by_gate", "harmless_rebuilt", "missed")
    assert latest["made"] >= 4
    assert sum(latest[k] for k in outcomes) == latest["made"]
    assert len(latest["missed_examples"]) == latest["missed"]
    assert set(result["crash"]) >= {"made", "lost_complete_records", "next_session_ok"}
    assert result["concurrent"]["made"] == 1
    assert len(result["commit"]) == 40 and result["seed"] == 11
    assert len(result["loadavg_start"]) == len(result["loadavg_end"]) == 3
