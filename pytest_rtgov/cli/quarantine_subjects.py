"""``rtgov quarantine add``'s refusal of unknown subjects: a test must collect, a gate
must be named in ``gates.toml``.

A test node id is checked by collecting its file in the project, as pytest would:
``python -m pytest --collect-only -q FILE`` run in the project root, with the
project's ``addopts`` (ini and ``$PYTEST_ADDOPTS``) left out and rtgov switched off, so
that collecting records nothing and a ``-n``/``--rtgov`` there does not run; the id
must be one it prints, or a function whose parametrizations it prints.
"""

from __future__ import annotations

import difflib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from pytest_rtgov.core.quarantine import Entry, QuarantineEntryError, covers

__all__ = ["check_subject_exists", "collected_node_ids"]

COLLECT_TIMEOUT_S = 300


def _unknown(message: str) -> QuarantineEntryError:
    return QuarantineEntryError(f"quarantine add: SUBJECT: {message}", field="subject")


def collected_node_ids(root: Path, path: str) -> list[str]:
    """The node ids ``pytest --collect-only -q PATH`` prints in ``root``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    command = [
        sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
        "-o", "addopts=", "-o", "rtgov=false", "-o", "rtgov_gate=false", path,
    ]  # fmt: skip
    try:
        done = subprocess.run(
            command, cwd=root, env=env, capture_output=True, text=True,
            timeout=COLLECT_TIMEOUT_S, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise _unknown(f"collecting {path} took over {COLLECT_TIMEOUT_S} s") from None
    ids = []  # one node id a line, from the first column, up to the first blank line
    for line in done.stdout.splitlines():
        if not line.strip():
            break
        if "::" in line and not line[0].isspace():
            ids.append(line.rstrip())
    if done.returncode not in (0, 5) and not ids:
        tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-3:])
        raise _unknown(f"{path} does not collect (pytest exit {done.returncode}: {tail})")
    return ids


def _check_test(root: Path, nodeid: str) -> None:
    path = nodeid.split("::", 1)[0]
    if Path(path).is_absolute() or ".." in Path(path).parts or not (root / path).is_file():
        raise _unknown(
            f"expected a collected test's node id, but {path!r} is no file under {root} "
            "(node ids are relative to the project root)"
        )
    ids = collected_node_ids(root, path)
    if any(covers(nodeid, i) for i in ids):
        return
    near = difflib.get_close_matches(nodeid, ids, n=3)
    hint = f"; did you mean {', '.join(near)}?" if near else f" ({len(ids)} tests there)"
    raise _unknown(f"expected a collected test's node id, {nodeid!r} is not one{hint}")


def _check_gate(where: Any, entry: Entry) -> None:
    name, _ = entry.gate
    if not where.gates_file.is_file():
        raise _unknown(f"{entry.subject!r} names gate {name!r}, but there is no gates file "
                       f"{where.gates_file}")  # fmt: skip
    names = [gate.name for gate in where.load_gates().gates]
    if not any(entry.subject_of_gate(n) is not None for n in names):  # names may hold ":"
        raise _unknown(
            f"{where.gates_file} has no gate {name!r} (gates: {', '.join(names) or 'none'})"
        )


def check_subject_exists(where: Any, root: Path, entry: Entry) -> None:
    """Refuse (exit 4) a test that does not collect or a gate ``gates.toml`` lacks;
    ``where``: the command's :class:`~pytest_rtgov.store.paths.Paths`."""
    if entry.kind == "gate":
        _check_gate(where, entry)
    else:
        _check_test(root, entry.subject)
