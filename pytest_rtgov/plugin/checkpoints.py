"""Array checkpoints in a measuring process: captured, kept, and attributed to their owner.

``rtgov.checkpoint(name, array, keep=False)`` (``plugin/api.py``), every
``rtgov.record_digest`` and every output of a ``@stage`` fixture become an
:class:`~pytest_rtgov.core.array_checkpoints.ArrayCheckpoint`. Like a metric, a checkpoint
belongs to the fixture setup running when it is captured, else to the current test
(``plugin/capture.py`` keeps one list per open fixture setup). ``seq`` counts this
process's checkpoints: their causal order. With ``keep=True`` or
``--rtgov-keep-checkpoints`` the array's ``.npy`` bytes go into the state directory's
object store (``store/objects.py``), so that a replay can show a divergence element by
element. Checkpoints travel as builtins (``ArrayCheckpoint.to_dict``) until the record is
built.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_rtgov.core.array_checkpoints import ArrayCheckpoint, npy_digest
from pytest_rtgov.errors import InvalidMetricError

__all__ = ["Checkpoints", "array_checkpoint", "from_wire", "npy_of"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:/-]{0,127}")


def npy_of(name: object, array: Any) -> tuple[bytes, Any]:
    """The ``.npy`` bytes of ``array`` (copied to the host first) and the host array;
    a bad name, a non-array or an object array raises :class:`InvalidMetricError`."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidMetricError(
            f"invalid checkpoint name {name!r}: expected a letter or '_' followed by up to "
            "127 letters, digits or '_.:/-'"
        )
    import numpy as np

    host = array.get() if type(array).__module__.startswith("cupy") else array
    if isinstance(host, np.generic):
        host = np.asarray(host)
    if not isinstance(host, np.ndarray):
        raise InvalidMetricError(
            f"checkpoint {name!r}: expected a numpy or cupy array, got "
            f"{type(array).__module__}.{type(array).__qualname__}"
        )
    if host.dtype.hasobject:
        raise InvalidMetricError(
            f"checkpoint {name!r}: dtype {host.dtype} holds Python objects, expected numbers "
            "(an object array has no stable bytes)"
        )
    from pytest_rtgov.store.stage_cache import array_bytes

    return array_bytes(host), host


def array_checkpoint(name: str, array: Any) -> str:
    """Validate ``array`` and return its checkpoint digest (no session: nothing kept)."""
    npy, _ = npy_of(name, array)
    return npy_digest(npy)


class Checkpoints:
    """This process's checkpoints: the sequence counter, the open owners, the kept bytes.

    ``fixtures`` is a stack: (owner, list) per fixture setup that is running (owner:
    ``fixture NAME`` for a function-scoped fixture, None for a wider one); ``test`` the
    current test's list (None: none captured yet). ``tap``, when set (the determinism
    check, ``plugin/determinism.py``), also sees every checkpoint with its owner.
    """

    __slots__ = ("_seq", "_store", "fixtures", "keep_all", "state_dir", "tap", "test")

    def __init__(self, state_dir: Path, *, keep_all: bool) -> None:
        self.state_dir = state_dir
        self.keep_all = keep_all
        self._seq = 0
        self._store: Any = None
        self.fixtures: list[tuple[str | None, list[dict[str, Any]]]] = []
        self.test: list[dict[str, Any]] | None = None
        self.tap: Any = None

    def capture(self, name: str, array: Any, *, keep: bool, in_test: bool) -> str:
        """``rtgov.checkpoint``: the array's checkpoint, attributed; returns its digest."""
        npy, host = npy_of(name, array)
        kept = keep or self.keep_all
        if kept:
            digest = self._objects().put(npy)
        else:
            digest = npy_digest(npy)
        self.add("array", name, digest, host.dtype.str, host.shape, kept=kept, in_test=in_test)
        return digest

    def add(
        self,
        kind: str,
        name: str,
        digest: str,
        dtype: str | None,
        shape: tuple[int, ...] | None,
        *,
        kept: bool = False,
        in_test: bool,
    ) -> None:
        """One checkpoint, on the running fixture setup, else on the current test."""
        checkpoint = {
            "dtype": dtype,
            "kept": kept,
            "kind": kind,
            "name": name,
            "seq": self._seq,
            "sha256": digest,
            "shape": None if shape is None else [int(n) for n in shape],
        }
        owner: str | None = "test"
        if self.fixtures:
            owner, taken = self.fixtures[-1]
            taken.append(checkpoint)
        elif in_test:
            if self.test is None:
                self.test = []
            self.test.append(checkpoint)
        else:
            raise InvalidMetricError(
                f"checkpoint {name!r} captured outside any test or fixture setup; "
                "capture it from a test body or a fixture"
            )
        self._seq += 1
        if self.tap is not None:
            self.tap(owner, checkpoint)

    def start_test(self) -> int:
        """A test starts: it takes the next ``seq`` itself, so that tests and checkpoints
        share one causal order (``TestEntry.seq``: where a replay runs it)."""
        seq = self._seq
        self._seq += 1
        return seq

    def digest(self, name: str, value: str, data: Any, *, in_test: bool) -> None:
        """``rtgov.record_digest``: a ``digest`` checkpoint of the metric's value."""
        dtype = shape = None
        if hasattr(data, "dtype") and hasattr(data, "shape"):
            dtype, shape = str(data.dtype.str), tuple(data.shape)
        self.add("digest", name, value, dtype, shape, in_test=in_test)

    def stage_outputs(self, event: Mapping[str, Any], result: Any, metrics: Any) -> None:
        """A ``@stage`` setup's outputs, when it finishes: one ``output`` checkpoint each,
        named as the output, its digest the event's (the bytes are in the stage cache's
        objects). A hit did not run the body: the digests its entry sealed among the
        metrics it replays become ``digest`` checkpoints first, as the body's were."""
        if event.get("outcome") == "hit":
            for metric in metrics:
                value = metric.value
                if isinstance(value, str) and value.startswith("sha256:"):
                    self.add("digest", metric.name, value, None, None, in_test=False)
        arrays = getattr(result, "arrays", {})
        for output, hexdigest in sorted(dict(event.get("outputs") or {}).items()):
            array = arrays.get(output)
            dtype = None if array is None else str(array.dtype.str)
            shape = None if array is None else tuple(array.shape)
            kept = False
            if self.keep_all and array is not None:  # a replay: its outputs' bytes too
                npy, _ = npy_of(output, array)
                kept = self._objects().put(npy) == "sha256:" + hexdigest
            self.add("output", output, "sha256:" + hexdigest, dtype, shape, kept=kept,
                     in_test=False)  # fmt: skip

    def _objects(self) -> Any:
        if self._store is None:
            from pytest_rtgov.store.objects import ObjectStore

            self._store = ObjectStore.of_state_dir(self.state_dir)
        return self._store


def from_wire(checkpoints: Any) -> tuple[ArrayCheckpoint, ...]:
    """Builtin checkpoints (this plugin's own, from a worker or this process) as values."""
    return tuple(
        ArrayCheckpoint(
            name=c["name"],
            seq=c["seq"],
            kind=c["kind"],
            sha256=c["sha256"],
            dtype=c["dtype"],
            shape=None if c["shape"] is None else tuple(c["shape"]),
            kept=c["kept"],
        )
        for c in checkpoints or ()
    )
