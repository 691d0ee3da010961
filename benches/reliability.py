"""Reliability: tamper trials, crash trials and concurrent sessions against a real state dir.

Builds a small scratch project in a temporary directory (a git repository with a
``gates.toml``, two tests, one recording a metric and saving an artifact with
``rtgov.save_artifact``, an A/B timing gate with ``ab = true``, a keyring holding a key
made by ``rtgov keys generate`` and given through ``RTGOV_SIGNING_KEY``), runs three
``pytest --rtgov-gate`` sessions in it (the second refreshes the baseline), and then:

- **Tamper trials.** For every file kind of the state (ledger log, checkpoints, run
  records, ``latest``, artifacts and their seals, the baseline's files and seal, the
  keyring, the A/B code export ``ab/<sha>/``, the delta index, ``report.html``) and every
  structural change that applies to it (byte flip at a seeded offset, truncation,
  deletion, duplication, reordering, rollback to a snapshot taken after session 1,
  substitution by a file of another valid state dir or of another run), a copy of the
  pristine project is changed and then checked, in this order:

  1. ``rtgov verify --require-signature``: a nonzero exit is ``detected_by_verify``;
  2. for what a gate reads (baseline, keyring, A/B export): a ``CI=true``
     ``pytest --rtgov-gate`` session; a nonzero exit is ``detected_by_gate``;
  3. for derived files (index, ``latest``, A/B export) and the keyring: when the
     commands that read them print exactly what they print on the pristine copy (for the
     A/B export: the export after the gated session equals the pristine one; for the
     keyring: the set of trusted key lines is unchanged), ``harmless_rebuilt``;
  4. anything else is ``missed``, and listed.

  A change that leaves the bytes as they were (a rollback of a file that did not change
  since session 1) is skipped, not counted.
- **Crash trials.** A ``pytest --rtgov-gate`` session (some with
  ``--rtgov-update-baseline``) runs under ``strace -e inject=SYSCALL:signal=SIGKILL:when=N``,
  which kills the pytest process as it enters its N-th ``write``, ``fsync`` or
  ``rename``. Then the next session runs and ``rtgov verify`` checks the result. A
  complete record is one whose ``verdict`` frame was wholly in the log when the process
  died (a kill leaves the page cache intact): it is lost when, afterwards, that frame,
  or a run record file whose canonical JSON hashes to its ``record_sha256``, is gone.
- **Concurrent sessions.** Two ``pytest --rtgov-gate`` sessions start together on one
  state dir; afterwards both must have exited 0, ``rtgov verify`` must pass, each
  session's leaves must be contiguous in the log, and both run records must be there.
  Also, ``rtgov verify`` runs over and over while a session appends; every nonzero exit
  there is counted (a reader beside a writer should not see an intact ledger as broken).

The frame parser and record hashing used for the checks are this script's own (the
formats of docs/ledger.md), not the code under test. Every outcome is counted as it
happened; nothing is inferred.

Requires ``strace`` for the crash trials (``apt-get install -y strace``); without it
they are skipped and the JSON says so.

Usage: python benches/reliability.py [--quick] [--seed 11] [--kinds KIND,...] [--head]
       [--crash N] [--concurrent N] [--out benches/results/reliability.json]

``--head`` measures the committed HEAD (a ``git archive`` of ``pytest_rtgov/`` put first
on ``PYTHONPATH``) rather than the working tree, which may hold uncommitted edits; without
it the JSON lists the package's uncommitted files.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MAGIC = b"RTGOV-LEDGER/1\n"
HEADER = 40
PYTEST_ARGS = ["-q", "-p", "no:cacheprovider", "-p", "no:randomly", "--rtgov-gate"]

KERNEL = """\
def work(n):
    total = 0
    for i in range(n):
        total += i * i
    return total
"""

# The slower kernel a tampered A/B export would carry: it makes the baseline code slow,
# so that a real slowdown of the current code would pass the gate.
SLOWER_KERNEL = KERNEL.replace("total += i * i", "total += i * i * 1 ** 2 + 0 * i")

TESTS = """\
import os

import numpy as np
import pytest
from mykernel import work

VALUE = int(os.environ.get("REL_VALUE", "1"))


@pytest.mark.rtgov(rounds=3)
def test_work():
    work(2000)


def test_metric(rtgov):
    rtgov.record("loss", 0.3 - 0.05 * VALUE, higher_is_better=False)
    rtgov.save_artifact("model", {"w": np.arange(8, dtype=np.float64) * VALUE})
"""

GATES = """\
[defaults]
baseline = "baseline"
ab_pairs = 5
confirm = 0

[[gates]]
name = "time"
metric = "wall_time"
tests = ["test_rel.py::test_work"]
max_regression_pct = 1000
ab = true

[[gates]]
name = "loss"
metric = "loss"
tests = ["test_rel.py::test_metric"]
max_regression_pct = 5
"""

OUTCOMES = ("detected_by_verify", "detected_by_gate", "harmless_rebuilt", "missed")


class NotApplicable(Exception):
    """The change does not apply to this state (nothing to reorder, no such file)."""


# --------------------------------------------------------------------------- helpers


def rtgov_cmd(source: Path | None) -> list[str]:
    script = Path(sys.executable).parent / "rtgov"
    if script.exists() and source is None:
        return [str(script)]
    # with --head the package comes from PYTHONPATH, ahead of the editable install
    return [sys.executable, "-c", "import sys; from pytest_rtgov.cli import main; sys.exit(main())"]


def first_line(text: str, limit: int = 300) -> str:
    """The line of a command's output that says what went wrong (best effort)."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return ""
    words = ("error", "fail", "refus", "does not", "mismatch", "not ")

    def wrong(ln: str) -> bool:
        return any(w in ln.lower() for w in words) and not ln.startswith(("=", "_"))

    for pick in (
        lambda ln: ln.startswith("rtgov") and wrong(ln),
        lambda ln: ln.startswith("E ") and wrong(ln),
        wrong,
    ):
        for ln in lines:
            if pick(ln):
                return ln[:limit]
    return lines[-1][:limit]


@dataclass
class Frame:
    offset: int
    raw: bytes  # header + payload

    @property
    def payload(self) -> bytes:
        return self.raw[HEADER:]


def parse_log(data: bytes) -> tuple[list[Frame], bytes]:
    """Complete frames in order and the bytes after them (a torn tail, or garbage).

    Stops at the first frame that does not check; what follows is returned as the tail."""
    if not data.startswith(MAGIC):
        return [], data
    frames: list[Frame] = []
    pos = len(MAGIC)
    while pos + HEADER <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        (crc,) = struct.unpack(">I", data[pos + 4 : pos + 8])
        if zlib.crc32(data[pos : pos + 4]) != crc or not 1 <= length <= 64 << 20:
            break
        end = pos + HEADER + length
        if end > len(data):
            break
        payload = data[pos + HEADER : end]
        if hashlib.sha256(b"\x00" + payload).digest() != data[pos + 8 : pos + HEADER]:
            break
        frames.append(Frame(pos, data[pos:end]))
        pos = end
    return frames, data[pos:]


def make_frame(payload: bytes) -> bytes:
    length = struct.pack(">I", len(payload))
    return (
        length
        + struct.pack(">I", zlib.crc32(length))
        + hashlib.sha256(b"\x00" + payload).digest()
        + payload
    )


def canonical(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def verdicts(state: Path) -> dict[str, tuple[bytes, str]]:
    """run id -> (verdict frame payload, record_sha256) for each complete verdict frame."""
    log = state / "ledger" / "log"
    if not log.exists():
        return {}
    frames, _ = parse_log(log.read_bytes())
    out: dict[str, tuple[bytes, str]] = {}
    for frame in frames:
        try:
            leaf = json.loads(frame.payload)
        except ValueError:
            continue
        if leaf.get("kind") == "verdict":
            out[leaf["run_id"]] = (frame.payload, leaf["record_sha256"])
    return out


def record_intact(state: Path, run_id: str, digest: str) -> bool:
    path = state / "runs" / f"{run_id}.json"
    try:
        record = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return "sha256:" + hashlib.sha256(canonical(record)).hexdigest() == digest


def run_ids_of_leaves(state: Path) -> list[str | None]:
    frames, _ = parse_log((state / "ledger" / "log").read_bytes())
    ids: list[str | None] = []
    for frame in frames:
        try:
            ids.append(json.loads(frame.payload).get("run_id"))
        except ValueError:
            ids.append(None)
    return ids


def tree_bytes(root: Path) -> dict[str, bytes]:
    if not root.is_dir():
        return {}
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


# --------------------------------------------------------------------------- the project


class Bench:
    def __init__(self, work: Path, seed: int, quick: bool, source: Path | None = None) -> None:
        self.work = work
        self.rng = random.Random(seed)
        self.quick = quick
        self.rtgov = rtgov_cmd(source)
        self.keys = work / "keys"
        self.keys.mkdir()
        self.tracebacks: list[str] = []
        self.note = ""  # why the last harmlessness check said no
        self.context = "setup"  # the trial under way, for the traceback list
        base = {
            k: v
            for k, v in os.environ.items()
            if k not in {"CI", "GITHUB_ACTIONS", "RTGOV_SIGNING_KEY", "RTGOV_TRUSTED_KEYS"}
            and not k.startswith("PYTEST_")
        }
        base["PYTHONDONTWRITEBYTECODE"] = "1"
        base["OPENBLAS_NUM_THREADS"] = "1"
        base["RTGOV_SIGNING_KEY"] = str(self.keys / "bench.key")
        base["REL_VALUE"] = "2"
        if source is not None:
            base["PYTHONPATH"] = str(source)
        self.env = base
        self.trusted_keys_env = any(
            "RTGOV_TRUSTED_KEYS" in p.read_text()
            for p in ((source or REPO) / "pytest_rtgov").rglob("*.py")
        )

    # ---- processes

    def proc(
        self, cmd: list[str], cwd: Path, env: dict[str, str] | None = None, what: str = ""
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            cmd, cwd=cwd, env=env or self.env, capture_output=True, text=True, timeout=300
        )
        if "Traceback (most recent call last)" in result.stderr + result.stdout:
            lines = [ln for ln in (result.stderr or result.stdout).splitlines() if ln.strip()]
            self.tracebacks.append(
                f"{self.context} | {what or ' '.join(cmd[-3:])}: {lines[-1].strip()[:200]}"
            )
        return result

    def session(
        self, proj: Path, *extra: str, value: int = 2, ci: bool = False
    ) -> subprocess.CompletedProcess[str]:
        env = dict(self.env, REL_VALUE=str(value))
        if ci:
            env["CI"] = "true"
            if self.trusted_keys_env:
                env["RTGOV_TRUSTED_KEYS"] = self.keyring_line
        return self.proc(
            [sys.executable, "-m", "pytest", *PYTEST_ARGS, *extra], proj, env, "session"
        )

    def verify(self, proj: Path) -> subprocess.CompletedProcess[str]:
        return self.proc([*self.rtgov, "verify", "--require-signature"], proj, what="verify")

    def cli(self, proj: Path, *args: str) -> tuple[int, str, str]:
        """Exit status, stdout, and the line of stderr that matters (empty on success)."""
        result = self.proc([*self.rtgov, *args], proj, what=" ".join(args[:2]))
        why = first_line(result.stderr) if result.returncode else ""
        note = f"exit {result.returncode} {why}" if result.returncode else "exit 0, other output"
        return result.returncode, result.stdout, note

    # ---- setup

    def git(self, proj: Path, *args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com", *args],
            cwd=proj,
            check=True,
            capture_output=True,
        )

    def build(self) -> None:
        template = self.work / "template" / "proj"
        template.mkdir(parents=True)
        (template / "mykernel.py").write_text(KERNEL)
        (template / "test_rel.py").write_text(TESTS)
        (template / "gates.toml").write_text(GATES)
        (template / "pytest.ini").write_text("[pytest]\n")
        for name, ring in (("bench", template / "rtgov.keyring"), ("other", None)):
            ring = ring or self.keys / "other.keyring"
            made = self.proc(
                [*self.rtgov, "keys", "generate", name, "--out", str(self.keys / f"{name}.key"),
                 "--keyring", str(ring)],
                template,
            )  # fmt: skip
            if made.returncode:
                raise SystemExit(f"rtgov keys generate failed: {made.stderr}")
        self.keyring_line = (template / "rtgov.keyring").read_text().strip().splitlines()[-1]
        self.git(template, "init", "-q")
        self.git(template, "add", ".")
        self.git(template, "commit", "-q", "-m", "base")

        self.main = self.work / "main" / "proj"
        shutil.copytree(template, self.main, symlinks=True)
        self.snap = self.work / "snap" / "proj"
        self.other = self.work / "other" / "proj"
        shutil.copytree(template, self.other, symlinks=True)
        steps: list[tuple[Path, tuple[str, ...], int]] = [
            (self.main, (), 1),
            (self.main, ("--rtgov-update-baseline", "--rtgov-reason=bench refresh"), 2),
            (self.main, (), 2),
            (self.other, (), 0),
            (self.other, (), 0),
        ]
        for i, (proj, extra, value) in enumerate(steps):
            done = self.session(proj, *extra, value=value)
            if done.returncode:
                raise SystemExit(f"setup session {i} failed:\n{done.stdout}\n{done.stderr}")
            if i == 0:
                shutil.copytree(self.main, self.snap, symlinks=True)
        self.runs = sorted(p.stem for p in (self.main / ".rtgov" / "runs").glob("*.json"))
        self.other_runs = sorted(p.stem for p in (self.other / ".rtgov" / "runs").glob("*.json"))
        self.ab_dir = next((self.main / ".rtgov" / "ab").iterdir()).relative_to(self.main)

        where = self.proc(
            [sys.executable, "-c", "import pytest_rtgov; print(pytest_rtgov.__file__)"], self.main
        )
        self.package = str(Path(where.stdout.strip()).parent)
        pristine = self.verify(self.main)
        if pristine.returncode:
            raise SystemExit(f"the pristine state does not verify:\n{pristine.stderr}")
        self.consumers_pristine = self.consumers(self.main)
        self.latest_pristine = self.cli(self.main, "show", "latest", "--format", "json")
        self.ab_pristine = tree_bytes(self.main / self.ab_dir)

    def consumers(self, proj: Path) -> list[tuple[int, str, str]]:
        """What the index's readers print: a comparison and a series."""
        return [
            self.cli(proj, "compare", self.runs[0], self.runs[-1], "--all", "--format", "json"),
            self.cli(proj, "graph", "query", "series", "test_rel.py::test_metric", "loss",
                     "--format", "json"),
        ]  # fmt: skip

    # ---- controls

    def controls(self) -> dict[str, Any]:
        out: dict[str, Any] = {"verify_rc": [], "ci_gate_rc": []}
        for _ in range(1 if self.quick else 2):
            trial = self.fresh_copy()
            out["verify_rc"].append(self.verify(trial).returncode)
            out["ci_gate_rc"].append(self.session(trial, ci=True).returncode)
        out["ok"] = all(rc == 0 for rc in out["verify_rc"] + out["ci_gate_rc"])
        return out

    def fresh_copy(self) -> Path:
        trial = self.work / "trial" / "proj"
        if trial.parent.exists():
            shutil.rmtree(trial.parent)
        shutil.copytree(self.main, trial, symlinks=True)
        return trial


# --------------------------------------------------------------------------- changes


def flip(path: Path, rng: random.Random) -> str:
    data = bytearray(path.read_bytes())
    if not data:
        raise NotApplicable("empty file")
    at = rng.randrange(len(data))
    bit = rng.randrange(8)
    data[at] ^= 1 << bit
    path.write_bytes(bytes(data))
    return f"bit {bit} of byte {at}/{len(data)}"


def truncate(path: Path, rng: random.Random) -> str:
    data = path.read_bytes()
    if not data:
        raise NotApplicable("empty file")
    keep = rng.randrange(len(data))
    path.write_bytes(data[:keep])
    return f"kept {keep}/{len(data)} bytes"


def delete(path: Path) -> str:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()
    return "deleted"


def replace_with(path: Path, source: Path) -> str:
    if not source.exists():
        raise NotApplicable(f"no {source.name} in the source state")
    if path.is_dir() or source.is_dir():
        if path.exists():
            shutil.rmtree(path)
        shutil.copytree(source, path)
    else:
        path.write_bytes(source.read_bytes())
    parts = source.parts
    if "proj" in parts:  # which copy (snap, other, trial) and the path inside it
        at = parts.index("proj")
        return "from " + "/".join((parts[at - 1], *parts[at + 1 :]))
    return f"from {source.name}"


def swap(a: Path, b: Path) -> str:
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)
    return f"swapped {a.name} and {b.name}"


@dataclass
class Trial:
    kind: str
    change: str
    variant: str
    mutate: Callable[[Path], str]
    gate: bool = False
    harmless: Callable[[Path], bool] | None = None


@dataclass
class KindResult:
    made: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    missed_examples: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    tracebacks: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"made": self.made, **self.counts, "missed_examples": self.missed_examples,
                "trials_with_a_traceback": self.tracebacks,
                "skipped_noop_or_not_applicable": self.skipped}  # fmt: skip


def trials(bench: Bench) -> list[Trial]:
    """Every (file kind, change) pair, with seeded random parameters."""
    rng = bench.rng
    k_flip = 1 if bench.quick else 6
    k_trunc = 1 if bench.quick else 3
    state = ".rtgov"
    runs = bench.runs
    out: list[Trial] = []

    def add(kind: str, change: str, variant: str, fn: Callable[[Path], str], **kw: Any) -> None:
        out.append(Trial(kind, change, variant, fn, **kw))

    def seeded(fn: Callable[[Path, random.Random], str], rel: Callable[[], str]) -> Callable:
        sub = random.Random(rng.random())
        return lambda t: fn(t / rel(), sub)

    # ledger log --------------------------------------------------------------
    log = f"{state}/ledger/log"

    def frames_of(t: Path) -> tuple[bytes, list[Frame], bytes]:
        data = (t / log).read_bytes()
        frames, tail = parse_log(data)
        return data, frames, tail

    def write_frames(t: Path, frames: list[bytes]) -> None:
        (t / log).write_bytes(MAGIC + b"".join(frames))

    def frame_op(op: str, sub: random.Random) -> Callable[[Path], str]:
        def fn(t: Path) -> str:
            _, frames, _ = frames_of(t)
            raws = [f.raw for f in frames]
            i = sub.randrange(1, len(raws))
            if op == "drop":
                del raws[i]
                what = f"frame {i} removed"
            elif op == "dup":
                raws.insert(i, raws[i])
                what = f"frame {i} duplicated in place"
            elif op == "dup_last":
                raws.append(raws[-1])
                what = "last frame appended again"
            elif op == "swap_adjacent":
                i = sub.randrange(1, len(raws) - 1)
                raws[i], raws[i + 1] = raws[i + 1], raws[i]
                what = f"frames {i} and {i + 1} swapped"
            elif op == "swap_any":
                j = sub.randrange(1, len(raws))
                while j == i or raws[j] == raws[i]:
                    j = sub.randrange(1, len(raws))
                raws[i], raws[j] = raws[j], raws[i]
                what = f"frames {i} and {j} swapped"
            elif op == "cut_boundary":
                raws = raws[:i]
                what = f"cut after frame {i - 1} (a frame boundary)"
            elif op == "rehash":
                kinds = [json.loads(r[HEADER:]).get("kind") for r in raws]
                i = max(k for k, kind in enumerate(kinds) if kind == "gate")
                leaf = json.loads(raws[i][HEADER:])
                leaf["status"] = "pass" if leaf.get("status") != "pass" else "breach"
                raws[i] = make_frame(canonical(leaf))
                what = f"gate leaf {i} edited (status), its CRC and leaf hash recomputed"
            elif op == "other_frame":
                other, _ = parse_log((bench.other / log).read_bytes())
                i = min(i, len(other) - 1)
                raws[i] = other[i].raw
                what = f"frame {i} replaced by frame {i} of another state dir"
            else:
                raise AssertionError(op)
            write_frames(t, raws)
            return what

        return fn

    for _ in range(k_flip * 2):
        add("ledger_log", "byte_flip", "", seeded(flip, lambda: log))
    for _ in range(k_trunc):
        add("ledger_log", "truncation", "at a random byte", seeded(truncate, lambda: log))
    add("ledger_log", "truncation", "at a frame boundary",
        frame_op("cut_boundary", random.Random(rng.random())))  # fmt: skip
    add("ledger_log", "deletion", "the file", lambda t: delete(t / log))
    add("ledger_log", "deletion", "one frame", frame_op("drop", random.Random(rng.random())))
    add("ledger_log", "duplication", "a frame in place",
        frame_op("dup", random.Random(rng.random())))  # fmt: skip
    add("ledger_log", "duplication", "the last frame appended",
        frame_op("dup_last", random.Random(rng.random())))  # fmt: skip
    add("ledger_log", "reordering", "adjacent frames",
        frame_op("swap_adjacent", random.Random(rng.random())))  # fmt: skip
    add("ledger_log", "reordering", "any two frames",
        frame_op("swap_any", random.Random(rng.random())))  # fmt: skip
    add("ledger_log", "rollback", "log from the snapshot after session 1",
        lambda t: replace_with(t / log, bench.snap / log))  # fmt: skip
    add("ledger_log", "substitution", "log of another state dir (same key)",
        lambda t: replace_with(t / log, bench.other / log))  # fmt: skip
    add("ledger_log", "substitution", "one frame from another state dir",
        frame_op("other_frame", random.Random(rng.random())))  # fmt: skip
    add("ledger_log", "substitution", "a gate leaf rewritten as a valid frame",
        frame_op("rehash", random.Random(rng.random())))  # fmt: skip

    # checkpoints -------------------------------------------------------------
    cps = f"{state}/ledger/checkpoints"

    def cp_list(t: Path) -> list[Path]:
        return sorted((t / cps).glob("*.txt"))

    def random_cp(sub: random.Random) -> Callable[[], str]:
        names = sorted(p.name for p in (bench.main / cps).glob("*.txt"))
        return lambda: f"{cps}/{sub.choice(names)}"

    for _ in range(k_flip):
        sub = random.Random(rng.random())
        add("checkpoint", "byte_flip", "", seeded(flip, random_cp(sub)))
    for _ in range(k_trunc):
        sub = random.Random(rng.random())
        add("checkpoint", "truncation", "", seeded(truncate, random_cp(sub)))
    add("checkpoint", "deletion", "the latest", lambda t: delete(cp_list(t)[-1]))
    add("checkpoint", "deletion", "a middle one", lambda t: delete(cp_list(t)[1]))
    add("checkpoint", "deletion", "all of them", lambda t: delete(t / cps))

    def cp_dup(which: int) -> Callable[[Path], str]:
        def fn(t: Path) -> str:
            files = cp_list(t)
            nxt = t / cps / f"{int(files[-1].stem) + 1:010d}.txt"
            nxt.write_bytes(files[which].read_bytes())
            return f"{files[which].name} copied as {nxt.name}"

        return fn

    add("checkpoint", "duplication", "the latest under the next number", cp_dup(-1))
    add("checkpoint", "duplication", "the first under the next number", cp_dup(0))
    add("checkpoint", "reordering", "the last two swapped",
        lambda t: swap(cp_list(t)[-2], cp_list(t)[-1]))  # fmt: skip
    add("checkpoint", "rollback", "checkpoints dir from the snapshot after session 1",
        lambda t: replace_with(t / cps, bench.snap / cps))  # fmt: skip

    def cp_other(t: Path) -> str:
        latest = cp_list(t)[-1]
        source = bench.other / cps / latest.name
        if not source.exists():
            source = sorted((bench.other / cps).glob("*.txt"))[-1]
        latest.write_bytes(source.read_bytes())
        return f"{latest.name} replaced by {source.name} of another state dir (same key)"

    add("checkpoint", "substitution", "the latest, from another state dir", cp_other)

    # run records ---------------------------------------------------------------
    def run_path(i: int) -> str:
        return f"{state}/runs/{runs[i]}.json"

    def random_run(sub: random.Random) -> Callable[[], str]:
        return lambda: run_path(sub.randrange(len(runs)))

    for _ in range(k_flip):
        add("run_record", "byte_flip", "", seeded(flip, random_run(random.Random(rng.random()))))
    for _ in range(k_trunc):
        add("run_record", "truncation", "",
            seeded(truncate, random_run(random.Random(rng.random()))))  # fmt: skip
    sub_del = random.Random(rng.random())
    add("run_record", "deletion", "one run record",
        lambda t: delete(t / run_path(sub_del.randrange(len(runs)))))  # fmt: skip

    def run_dup(t: Path) -> str:
        fake = "20200101T000000Z-abcdef"
        (t / state / "runs" / f"{fake}.json").write_bytes((t / run_path(-1)).read_bytes())
        return f"{runs[-1]}.json copied as {fake}.json"

    add("run_record", "duplication", "copied under another run id", run_dup)
    add("run_record", "reordering", "first and last swapped",
        lambda t: swap(t / run_path(0), t / run_path(-1)))  # fmt: skip
    add("run_record", "rollback", "runs/ from the snapshot after session 1",
        lambda t: replace_with(t / state / "runs", bench.snap / state / "runs"))  # fmt: skip
    add("run_record", "substitution", "another run's record under this run's name",
        lambda t: replace_with(t / run_path(-1), t / run_path(0)))  # fmt: skip

    def run_other(t: Path) -> str:
        name = f"{bench.other_runs[-1]}.json"
        shutil.copy(bench.other / state / "runs" / name, t / state / "runs" / name)
        return f"{name} of another state dir added"

    add("run_record", "substitution", "a record of another state dir added", run_other)

    # latest --------------------------------------------------------------------
    latest = f"{state}/latest"

    def latest_same(t: Path) -> bool:
        got = bench.cli(t, "show", "latest", "--format", "json")
        bench.note = "" if got == bench.latest_pristine else f"rtgov show latest: {got[2]}"
        return got == bench.latest_pristine

    add("latest", "byte_flip", "", seeded(flip, lambda: latest), harmless=latest_same)
    add("latest", "truncation", "", seeded(truncate, lambda: latest), harmless=latest_same)
    add("latest", "deletion", "", lambda t: delete(t / latest), harmless=latest_same)
    add("latest", "rollback", "latest from the snapshot after session 1",
        lambda t: replace_with(t / latest, bench.snap / latest), harmless=latest_same)  # fmt: skip
    add("latest", "substitution", "latest of another state dir",
        lambda t: replace_with(t / latest, bench.other / latest), harmless=latest_same)  # fmt: skip

    # artifacts and their seals ---------------------------------------------------
    def art(i: int, seal: bool = False, root: Path | None = None, run: str | None = None) -> str:
        name = "model.npz.dsse.json" if seal else "model.npz"
        return f"{state}/artifacts/{run or runs[i]}/main/{name}"

    def random_art(sub: random.Random, seal: bool) -> Callable[[], str]:
        return lambda: art(sub.randrange(len(runs)), seal)

    for seal, kind in ((False, "artifact"), (True, "artifact_seal")):
        for _ in range(k_flip):
            add(kind, "byte_flip", "",
                seeded(flip, random_art(random.Random(rng.random()), seal)))  # fmt: skip
        for _ in range(k_trunc):
            add(kind, "truncation", "",
                seeded(truncate, random_art(random.Random(rng.random()), seal)))  # fmt: skip
        add(kind, "deletion", "of the latest run",
            lambda t, s=seal: delete(t / art(-1, s)))  # fmt: skip
        add(kind, "reordering", "first and last run's swapped",
            lambda t, s=seal: swap(t / art(0, s), t / art(-1, s)))  # fmt: skip
        add(kind, "substitution", "the first run's under the latest run",
            lambda t, s=seal: replace_with(t / art(-1, s), t / art(0, s)))  # fmt: skip
        add(kind, "substitution", "another state dir's under the latest run",
            lambda t, s=seal: replace_with(
                t / art(-1, s), bench.other / art(0, s, run=bench.other_runs[-1])))  # fmt: skip

    def art_dup_name(t: Path) -> str:
        d = t / art(-1).rsplit("/", 1)[0]
        shutil.copy(d / "model.npz", d / "model2.npz")
        shutil.copy(d / "model.npz.dsse.json", d / "model2.npz.dsse.json")
        return "model.npz and its seal copied as model2.npz"

    def art_dup_run(t: Path) -> str:
        src = t / state / "artifacts" / runs[-1]
        shutil.copytree(src, src.parent / "20200101T000000Z-abcdef")
        return "the latest run's artifacts copied under another run id"

    add("artifact", "duplication", "under another name, with its seal", art_dup_name)
    add("artifact", "duplication", "under another run id, with its seal", art_dup_run)
    add("artifact", "deletion", "the whole artifacts dir",
        lambda t: delete(t / state / "artifacts"))  # fmt: skip
    add("artifact", "rollback", "artifacts/ from the snapshot after session 1",
        lambda t: replace_with(t / state / "artifacts",
                               bench.snap / state / "artifacts"))  # fmt: skip

    # baseline ------------------------------------------------------------------
    fp_file = next(p.name for p in (bench.main / "baseline").glob("env-*.json"))
    base_files = ["metrics.json", fp_file, "refreshes.jsonl", "baseline.dsse.json"]
    k_base = 1 if bench.quick else 2
    for name in base_files:
        kind = "baseline_seal" if name.endswith("dsse.json") else "baseline"
        for _ in range(k_base):
            add(kind, "byte_flip", name, seeded(flip, lambda n=name: f"baseline/{n}"), gate=True)
        add(kind, "truncation", name, seeded(truncate, lambda n=name: f"baseline/{n}"), gate=True)
        add(kind, "deletion", name, lambda t, n=name: delete(t / "baseline" / n), gate=True)
        add(kind, "rollback", f"{name} from the snapshot after session 1",
            lambda t, n=name: replace_with(t / "baseline" / n, bench.snap / "baseline" / n),
            gate=True)  # fmt: skip
        add(kind, "substitution", f"{name} of another state dir",
            lambda t, n=name: replace_with(t / "baseline" / n, bench.other / "baseline" / n),
            gate=True)  # fmt: skip
    add("baseline", "deletion", "the whole baseline dir", lambda t: delete(t / "baseline"),
        gate=True)  # fmt: skip

    def base_extra(t: Path) -> str:
        shutil.copy(t / "baseline" / fp_file, t / "baseline" / "env-0000000000000000.json")
        return f"{fp_file} copied as env-0000000000000000.json"

    def lines_op(op: str) -> Callable[[Path], str]:
        def fn(t: Path) -> str:
            path = t / "baseline" / "refreshes.jsonl"
            lines = path.read_bytes().splitlines(keepends=True)
            if op == "dup":
                lines.append(lines[-1])
                what = "last refresh line duplicated"
            else:
                if len(lines) < 2:
                    raise NotApplicable("one line")
                lines[0], lines[-1] = lines[-1], lines[0]
                what = "first and last refresh lines swapped"
            path.write_bytes(b"".join(lines))
            return what

        return fn

    add("baseline", "duplication", "an environment file under another fingerprint", base_extra,
        gate=True)  # fmt: skip
    add("baseline", "duplication", "a line of refreshes.jsonl", lines_op("dup"), gate=True)
    add("baseline", "reordering", "lines of refreshes.jsonl", lines_op("swap"), gate=True)
    add("baseline", "rollback", "the whole dir from the snapshot after session 1 (validly sealed)",
        lambda t: replace_with(t / "baseline", bench.snap / "baseline"), gate=True)  # fmt: skip
    add("baseline", "substitution", "the whole dir of another state dir (validly sealed)",
        lambda t: replace_with(t / "baseline", bench.other / "baseline"), gate=True)  # fmt: skip

    # keyring -------------------------------------------------------------------
    def same_keys(t: Path) -> bool:
        def keyset(p: Path) -> set[str]:
            if not p.exists():
                return set()
            return {
                ln.strip() for ln in p.read_text(errors="replace").splitlines()
                if ln.strip() and not ln.lstrip().startswith("#")
            }  # fmt: skip

        return keyset(t / "rtgov.keyring") == keyset(bench.main / "rtgov.keyring")

    for _ in range(k_flip):
        add("keyring", "byte_flip", "", seeded(flip, lambda: "rtgov.keyring"), gate=True,
            harmless=same_keys)  # fmt: skip
    add("keyring", "truncation", "", seeded(truncate, lambda: "rtgov.keyring"), gate=True,
        harmless=same_keys)  # fmt: skip
    add("keyring", "deletion", "", lambda t: delete(t / "rtgov.keyring"), gate=True,
        harmless=same_keys)  # fmt: skip

    def ring_dup(t: Path) -> str:
        path = t / "rtgov.keyring"
        path.write_text(path.read_text() + bench.keyring_line + "\n")
        return "the key line duplicated"

    add("keyring", "duplication", "a key line", ring_dup, gate=True, harmless=same_keys)
    add("keyring", "substitution", "a keyring naming another key",
        lambda t: replace_with(t / "rtgov.keyring", bench.keys / "other.keyring"), gate=True,
        harmless=same_keys)  # fmt: skip

    def ring_add(t: Path) -> str:
        path = t / "rtgov.keyring"
        extra = (bench.keys / "other.keyring").read_text().strip().splitlines()[-1]
        path.write_text(path.read_text() + extra + "\n")
        return "another key appended (no forged signature)"

    add("keyring", "duplication", "another key appended", ring_add, gate=True, harmless=same_keys)

    # A/B export ----------------------------------------------------------------
    ab = str(bench.ab_dir)

    def ab_same(t: Path) -> bool:
        same = tree_bytes(t / ab) == bench.ab_pristine
        bench.note = "" if same else "the gated session passed; the export still differs from git"
        return same

    for _ in range(k_flip):
        add("ab_export", "byte_flip", "mykernel.py", seeded(flip, lambda: f"{ab}/mykernel.py"),
            gate=True, harmless=ab_same)  # fmt: skip
    add("ab_export", "truncation", "mykernel.py", seeded(truncate, lambda: f"{ab}/mykernel.py"),
        gate=True, harmless=ab_same)  # fmt: skip
    add("ab_export", "deletion", "the export", lambda t: delete(t / ab), gate=True,
        harmless=ab_same)  # fmt: skip
    add("ab_export", "deletion", "mykernel.py", lambda t: delete(t / ab / "mykernel.py"),
        gate=True, harmless=ab_same)  # fmt: skip

    def ab_slower(t: Path) -> str:
        (t / ab / "mykernel.py").write_text(SLOWER_KERNEL)
        return "mykernel.py replaced by a slower valid version"

    def ab_test(t: Path) -> str:
        path = t / ab / "test_rel.py"
        path.write_text(path.read_text().replace("work(2000)", "work(4000)"))
        return "test_rel.py edited to do twice the work"

    add("ab_export", "substitution", "a slower baseline kernel", ab_slower, gate=True,
        harmless=ab_same)  # fmt: skip
    add("ab_export", "substitution", "a baseline test doing more work", ab_test, gate=True,
        harmless=ab_same)  # fmt: skip

    # delta index -----------------------------------------------------------------
    idx_files = sorted(
        p.name for p in (bench.main / state / "index").iterdir() if p.is_file() and p.stat().st_size
    )

    def idx_same(t: Path) -> bool:
        got = bench.consumers(t)
        bench.note = "; ".join(
            f"{name}: {g[2]}" for name, g, want in zip(
                ("compare", "graph query series"), got, bench.consumers_pristine, strict=True)
            if g != want
        )  # fmt: skip
        return got == bench.consumers_pristine

    def random_idx(sub: random.Random) -> Callable[[], str]:
        return lambda: f"{state}/index/{sub.choice(idx_files)}"

    for _ in range(k_flip):
        add("index", "byte_flip", "", seeded(flip, random_idx(random.Random(rng.random()))),
            harmless=idx_same)  # fmt: skip
    for _ in range(k_trunc):
        add("index", "truncation", "", seeded(truncate, random_idx(random.Random(rng.random()))),
            harmless=idx_same)  # fmt: skip
    sub_idx = random.Random(rng.random())
    add("index", "deletion", "one file",
        lambda t: delete(t / f"{state}/index/{sub_idx.choice(idx_files)}"),
        harmless=idx_same)  # fmt: skip
    add("index", "deletion", "the whole index", lambda t: delete(t / state / "index"),
        harmless=idx_same)  # fmt: skip
    add("index", "rollback", "index/ from the snapshot after session 1",
        lambda t: replace_with(t / state / "index", bench.snap / state / "index"),
        harmless=idx_same)  # fmt: skip
    add("index", "substitution", "index/ of another state dir",
        lambda t: replace_with(t / state / "index", bench.other / state / "index"),
        harmless=idx_same)  # fmt: skip

    # the state dir as a whole ---------------------------------------------------------
    # An older copy, or another project's copy made with the same key, is validly signed
    # throughout: only a trusted checkpoint (rtgov.checkpoint) newer than it can tell.
    add("state_dir", "rollback", ".rtgov/ from the snapshot after session 1",
        lambda t: replace_with(t / state, bench.snap / state))  # fmt: skip
    add("state_dir", "substitution", ".rtgov/ of another state dir (same key)",
        lambda t: replace_with(t / state, bench.other / state))  # fmt: skip

    def with_trusted(then: Path) -> Callable[[Path], str]:
        def fn(t: Path) -> str:
            latest_cp = sorted((t / cps).glob("*.txt"))[-1]
            shutil.copy(latest_cp, t / "rtgov.checkpoint")
            control = bench.verify(t)
            if control.returncode:
                raise NotApplicable(f"the pristine copy with rtgov.checkpoint fails: "
                                    f"{first_line(control.stderr)}")  # fmt: skip
            return replace_with(t / state, then / state) + ", rtgov.checkpoint committed"

        return fn

    add("state_dir", "rollback", ".rtgov/ from the snapshot, with rtgov.checkpoint committed",
        with_trusted(bench.snap))  # fmt: skip
    add("state_dir", "substitution", ".rtgov/ of another state dir, rtgov.checkpoint committed",
        with_trusted(bench.other))  # fmt: skip

    # report ----------------------------------------------------------------------
    report = f"{state}/report.html"
    add("report", "byte_flip", "", seeded(flip, lambda: report))
    add("report", "truncation", "", seeded(truncate, lambda: report))
    add("report", "deletion", "", lambda t: delete(t / report))
    add("report", "rollback", "report from the snapshot after session 1",
        lambda t: replace_with(t / report, bench.snap / report))  # fmt: skip
    add("report", "substitution", "report of another state dir",
        lambda t: replace_with(t / report, bench.other / report))  # fmt: skip
    return out


def run_trial(bench: Bench, trial: Trial) -> dict[str, Any] | None:
    t = bench.fresh_copy()
    before = tree_bytes(t)
    try:
        what = trial.mutate(t)
    except NotApplicable as exc:
        return {"skipped": f"{trial.change} {trial.variant}: {exc}"}
    if tree_bytes(t) == before:
        return {"skipped": f"{trial.change} {trial.variant}: no byte changed"}
    row: dict[str, Any] = {
        "kind": trial.kind, "change": trial.change, "variant": trial.variant, "what": what,
    }  # fmt: skip
    bench.context = f"{trial.kind} {trial.change} ({what})"
    tracebacks = len(bench.tracebacks)
    row = classify(bench, trial, t, row)
    if len(bench.tracebacks) > tracebacks:
        row["traceback"] = True  # a command crashed: its exit status is not a designed one
    return row


def classify(bench: Bench, trial: Trial, t: Path, row: dict[str, Any]) -> dict[str, Any]:
    v = bench.verify(t)
    row["verify_rc"] = v.returncode
    if v.returncode:
        row["outcome"] = "detected_by_verify"
        row["message"] = first_line(v.stderr or v.stdout)
        return row
    if trial.gate:
        g = bench.session(t, ci=True)
        row["gate_rc"] = g.returncode
        if g.returncode:
            row["outcome"] = "detected_by_gate"
            row["message"] = first_line(g.stderr + "\n" + g.stdout)
            return row
    bench.note = ""
    if trial.harmless is not None and trial.harmless(t):
        row["outcome"] = "harmless_rebuilt"
        return row
    row["outcome"] = "missed"
    if bench.note:
        row["message"] = bench.note[:300]
    elif trial.gate:
        row["message"] = "rtgov verify and the CI=true gated session both passed"
    else:
        row["message"] = "rtgov verify passed"
    return row


# --------------------------------------------------------------------------- crashes


def count_calls(bench: Bench, extra: tuple[str, ...]) -> dict[str, int]:
    t = bench.fresh_copy()
    trace = bench.work / "trace.txt"
    subprocess.run(
        ["strace", "-qq", "-o", str(trace), "-e", "trace=write,fsync,rename",
         sys.executable, "-m", "pytest", *PYTEST_ARGS, *extra],
        cwd=t, env=bench.env, capture_output=True, timeout=300, check=True,
    )  # fmt: skip
    counts = {"write": 0, "fsync": 0, "rename": 0}
    for line in trace.read_text().splitlines():
        for name in counts:
            if line.startswith(name + "("):
                counts[name] += 1
    return counts


def crash_trials(bench: Bench, n_trials: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "made": 0, "lost_complete_records": 0, "next_session_ok": 0, "verify_ok_after": 0,
        "verify_ok_after_recover": 0, "not_killed": 0, "failures": [], "points": [],
    }  # fmt: skip
    if shutil.which("strace") is None:
        out["skipped"] = "strace is not installed (apt-get install -y strace)"
        return out
    variants = [
        ((), "gate"),
        (("--rtgov-update-baseline", "--rtgov-reason=crash trial"), "refresh"),
    ]
    plan: list[tuple[tuple[str, ...], str, str, int]] = []
    for extra, label in variants:
        counts = count_calls(bench, extra)
        out[f"syscalls_{label}"] = counts
        share = n_trials // 2 if label == "gate" else n_trials - n_trials // 2
        per = {"write": max(1, share // 2), "fsync": max(1, share // 4)}
        per["rename"] = max(1, share - per["write"] - per["fsync"])
        for name, k in per.items():
            total = counts[name]
            if total == 0:
                continue
            # the session end (record, ledger, checkpoint) is the last quarter of writes:
            # half the write kills land there
            picks: set[int] = set()
            while len(picks) < min(k, total):
                if name == "write" and bench.rng.random() < 0.5:
                    picks.add(bench.rng.randint(max(1, total * 3 // 4), total))
                else:
                    picks.add(bench.rng.randint(1, total))
            plan.extend((extra, label, name, n) for n in sorted(picks))
    for extra, label, name, n in plan[: max(n_trials, 0)]:
        t = bench.fresh_copy()
        killed = subprocess.run(
            ["strace", "-qq", "-o", "/dev/null", "-e", f"trace={name}",
             "-e", f"inject={name}:signal=SIGKILL:when={n}",
             sys.executable, "-m", "pytest", *PYTEST_ARGS, *extra],
            cwd=t, env=bench.env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        point = f"{label}:{name}#{n}"
        bench.context = f"crash {point}"
        if killed.returncode not in (-9, 137):
            out["not_killed"] += 1
            continue
        out["made"] += 1
        complete = verdicts(t / ".rtgov")
        intact_before = {
            rid for rid, (_, digest) in complete.items() if record_intact(t / ".rtgov", rid, digest)
        }
        nxt = bench.session(t)
        v = bench.verify(t)
        recovered: subprocess.CompletedProcess[str] | None = None
        recover_said = ""
        if v.returncode:
            # what the docs offer after a crash: review and sign with `ledger recover`
            rec = bench.proc([*bench.rtgov, "ledger", "recover"], t, what="ledger recover")
            recover_said = f"exit {rec.returncode}: " + " / ".join(
                ln.strip()[:160] for ln in (rec.stdout + rec.stderr).splitlines() if ln.strip()
            )
            recovered = bench.verify(t)
            out["verify_ok_after_recover"] += recovered.returncode == 0
        after = verdicts(t / ".rtgov")
        lost = [
            rid
            for rid, (payload, digest) in complete.items()
            if after.get(rid, (b"", ""))[0] != payload
            or (rid in intact_before and not record_intact(t / ".rtgov", rid, digest))
        ]
        out["lost_complete_records"] += len(lost)
        ok = nxt.returncode == 0
        out["next_session_ok"] += ok
        out["verify_ok_after"] += v.returncode == 0
        out["points"].append({
            "point": point, "complete_verdicts": len(complete), "lost": lost,
            "next_rc": nxt.returncode, "verify_rc": v.returncode,
            "verify_rc_after_recover": recovered.returncode if recovered else None,
        })  # fmt: skip
        if lost or not ok or v.returncode:
            out["failures"].append({
                "point": point, "lost": lost, "next_rc": nxt.returncode,
                "next_message": first_line(nxt.stderr + "\n" + nxt.stdout) if not ok else "",
                "verify_rc": v.returncode,
                "verify_message": first_line(v.stderr) if v.returncode else "",
                "recover_said": recover_said[:400],
                "verify_rc_after_recover": recovered.returncode if recovered else None,
                "verify_message_after_recover": (
                    first_line(recovered.stderr) if recovered and recovered.returncode else ""
                ),
            })  # fmt: skip
    return out


# --------------------------------------------------------------------------- concurrency


def concurrent_trials(bench: Bench, n: int) -> dict[str, Any]:
    out: dict[str, Any] = {"made": 0, "ok": 0, "interleaved": 0, "lost": 0, "failures": []}
    bench.context = "concurrent sessions"
    for _ in range(n):
        t = bench.fresh_copy()
        cmd = [sys.executable, "-m", "pytest", *PYTEST_ARGS]
        procs = [
            subprocess.Popen(cmd, cwd=t, env=bench.env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]  # fmt: skip
        results = [(*p.communicate(timeout=300), p.returncode) for p in procs]
        out["made"] += 1
        v = bench.verify(t)
        ids = run_ids_of_leaves(t / ".rtgov")
        blocks: list[str] = []
        for rid in ids:
            if rid is not None and (not blocks or blocks[-1] != rid):
                blocks.append(rid)
        interleaved = len(blocks) != len(set(blocks))
        new_runs = set(verdicts(t / ".rtgov")) - set(bench.runs)
        complete = verdicts(t / ".rtgov")
        lost = 2 - sum(
            1 for rid in new_runs if record_intact(t / ".rtgov", rid, complete[rid][1])
        )
        rcs = [r[2] for r in results]
        out["interleaved"] += interleaved
        out["lost"] += max(lost, 0)
        ok = not interleaved and lost <= 0 and v.returncode == 0 and rcs == [0, 0]
        out["ok"] += ok
        if not ok:
            out["failures"].append({
                "session_rcs": rcs, "verify_rc": v.returncode,
                "verify_message": first_line(v.stderr), "interleaved": interleaved,
                "records_missing": lost,
                "session_messages": [first_line(r[1] + "\n" + r[0]) for r in results if r[2]],
            })  # fmt: skip
    return out


def verify_during_sessions(bench: Bench, n: int) -> dict[str, Any]:
    """``rtgov verify`` run again and again while a session appends: a reader that runs
    beside a writer must not report an intact ledger as broken."""
    out: dict[str, Any] = {"sessions": 0, "verifies": 0, "nonzero": 0, "messages": [],
                           "final_verify_rc": []}  # fmt: skip
    bench.context = "verify during a session"
    for _ in range(n):
        t = bench.fresh_copy()
        proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", *PYTEST_ARGS], cwd=t, env=bench.env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        while proc.poll() is None:
            v = bench.verify(t)
            out["verifies"] += 1
            if v.returncode:
                out["nonzero"] += 1
                msg = first_line(v.stderr)
                if msg not in out["messages"]:
                    out["messages"].append(msg)
        proc.wait()
        out["sessions"] += 1
        out["final_verify_rc"].append(bench.verify(t).returncode)
    return out


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few trials of each kind")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--kinds", default="", help="comma-separated file kinds (default: all)")
    parser.add_argument("--crash", type=int, default=None, help="default 20, quick 2")
    parser.add_argument("--concurrent", type=int, default=None, help="default 4, quick 1")
    parser.add_argument(
        "--head",
        action="store_true",
        help="measure the committed HEAD (git archive), not the working tree's package",
    )
    parser.add_argument("--out", type=Path, default=REPO / "benches/results/reliability.json")
    args = parser.parse_args(argv)
    n_crash = args.crash if args.crash is not None else (2 if args.quick else 20)
    n_conc = args.concurrent if args.concurrent is not None else (1 if args.quick else 4)

    started = time.perf_counter()
    load_start = os.getloadavg()
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "pytest_rtgov"],
        cwd=REPO, capture_output=True, text=True,
    ).stdout.split("\n")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="rtgov-reliability-") as tmp:
        source: Path | None = None
        if args.head:
            source = Path(tmp) / "head"
            source.mkdir()
            archive = subprocess.run(
                ["git", "archive", "--format=tar", commit, "pytest_rtgov"],
                cwd=REPO, capture_output=True, check=True,
            ).stdout  # fmt: skip
            subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
        bench = Bench(Path(tmp), args.seed, args.quick, source)
        bench.build()
        controls = bench.controls()
        wanted = {k for k in args.kinds.split(",") if k}
        kinds: dict[str, KindResult] = {}
        rows: list[dict[str, Any]] = []
        for trial in trials(bench):
            if wanted and trial.kind not in wanted:
                continue
            res = kinds.setdefault(trial.kind, KindResult())
            row = run_trial(bench, trial)
            if row is None or "skipped" in row:
                res.skipped.append(row["skipped"] if row else trial.change)
                continue
            res.made += 1
            res.counts[row["outcome"]] += 1
            res.tracebacks += bool(row.get("traceback"))
            if row["outcome"] == "missed":
                res.missed_examples.append({
                    "change": row["change"], "variant": row["variant"], "what": row["what"],
                    "why": row["message"],
                })  # fmt: skip
            rows.append(row)
            print(f"{row['kind']:14} {row['change']:13} {row['outcome']:19} {row['what'][:60]}",
                  file=sys.stderr, flush=True)  # fmt: skip
        crash = crash_trials(bench, n_crash)
        print(f"crash: {crash['made']} made, {crash['lost_complete_records']} lost",
              file=sys.stderr)  # fmt: skip
        concurrent = concurrent_trials(bench, n_conc)
        concurrent["verify_during_session"] = verify_during_sessions(bench, max(1, n_conc // 2))
        trusted_env = bench.trusted_keys_env
        package = bench.package.replace(tmp, "<tmp>")
        tracebacks = bench.tracebacks
        tmp_name = tmp

    totals = dict.fromkeys(OUTCOMES, 0)
    by_change: dict[str, dict[str, int]] = {}
    for row in rows:
        totals[row["outcome"]] += 1
        c = by_change.setdefault(row["change"], {"made": 0, **dict.fromkeys(OUTCOMES, 0)})
        c["made"] += 1
        c[row["outcome"]] += 1
    made = len(rows)
    detected = totals["detected_by_verify"] + totals["detected_by_gate"]
    result = {
        "bench": "reliability",
        "command": "python benches/reliability.py" + (" --quick" if args.quick else "")
        + (f" --kinds {args.kinds}" if args.kinds else "")
        + (f" --seed {args.seed}" if args.seed != 11 else "")
        + (" --head" if args.head else ""),
        "commit": commit,
        "code": "git archive of the commit (--head)" if args.head else "the working tree",
        "uncommitted_package_changes": [] if args.head else [ln for ln in dirty if ln],
        "package_imported_from": package,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "seed": args.seed,
        "quick": args.quick,
        "python": sys.version.split()[0],
        "loadavg_start": [round(x, 2) for x in load_start],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "wall_s": round(time.perf_counter() - started, 1),
        "checks": {
            "verify": "rtgov verify --require-signature",
            "gate": "CI=true pytest --rtgov-gate"
            + (" with RTGOV_TRUSTED_KEYS set to the keyring's key" if trusted_env else ""),
        },
        "controls": controls,
        "tamper": {
            "made": made,
            **totals,
            "detected_over_made": f"{detected}/{made}",
            "detected_or_harmless_over_made": f"{detected + totals['harmless_rebuilt']}/{made}",
            "missed_over_made": f"{totals['missed']}/{made}",
            "missed_kinds": sorted(
                {r["kind"] + ":" + r["change"] for r in rows if r["outcome"] == "missed"}
            ),
            "by_change": by_change,
            "by_kind": {k: v.to_json() for k, v in kinds.items()},
        },
        "crash": crash,
        "concurrent": concurrent,
        "tracebacks": tracebacks,
        "trials": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=1, ensure_ascii=False) + "\n"
    args.out.write_text(text.replace(tmp_name, "<tmp>"))
    print(
        f"tamper: {detected}/{made} detected, {totals['harmless_rebuilt']} harmless, "
        f"{totals['missed']} missed; crash: {crash['made']} made, "
        f"{crash['lost_complete_records']} complete records lost, "
        f"{crash['next_session_ok']} next sessions ok; concurrent: "
        f"{concurrent['ok']}/{concurrent['made']} ok; {result['wall_s']} s -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
