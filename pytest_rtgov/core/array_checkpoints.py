"""Array checkpoints: the values a replay compares, one per recorded array or digest.

A checkpoint is what ``rtgov.checkpoint(name, array)`` captured inside a test or a
fixture, what ``rtgov.record_digest`` recorded (``kind="digest"``), or an output of a
``@stage`` fixture (``kind="output"``). It holds the sha256 of the array's ``.npy`` bytes
(for ``digest``: the digest metric's value), the dtype and shape, and whether those bytes
were kept in the state directory's object store (``keep=True`` or
``--rtgov-keep-checkpoints``), so that a divergence can be shown element by element.
``seq`` is the order of capture in its process: the causal order a replay walks.

>>> cp = ArrayCheckpoint(name="logits", seq=3, kind="array", sha256="sha256:" + "0" * 64,
...                      dtype="<f4", shape=(2, 5), kept=True)
>>> sorted(cp.to_dict())
['dtype', 'kept', 'kind', 'name', 'seq', 'sha256', 'shape']
>>> ArrayCheckpoint.from_dict(cp.to_dict()) == cp
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Annotated, Any

import msgspec

from pytest_rtgov.core.schema import convert, one_of
from pytest_rtgov.errors import RecordFormatError

__all__ = ["CHECKPOINT_KINDS", "ArrayCheckpoint", "npy_digest"]

CHECKPOINT_KINDS = ("array", "digest", "output")
Digest = Annotated[str, msgspec.Meta(pattern=r"^sha256:[0-9a-f]{64}$")]


class ArrayCheckpoint(msgspec.Struct, frozen=True):
    """One checkpoint (see the module's docstring)."""

    name: str
    seq: Annotated[int, msgspec.Meta(ge=0)]
    kind: Annotated[str, one_of(*CHECKPOINT_KINDS)]
    sha256: Digest
    dtype: str | None = None
    shape: tuple[Annotated[int, msgspec.Meta(ge=0)], ...] | None = None
    kept: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {  # keys sorted (see core.records.Sample.to_dict)
            "dtype": self.dtype,
            "kept": self.kept,
            "kind": self.kind,
            "name": self.name,
            "seq": self.seq,
            "sha256": self.sha256,
            "shape": None if self.shape is None else list(self.shape),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<checkpoint>") -> ArrayCheckpoint:
        return convert(data, cls, source=source, error=RecordFormatError)


def npy_digest(npy: bytes) -> str:
    """``sha256:<hex>`` of an array's ``.npy`` bytes: its checkpoint digest and its name
    in the object store (the stage cache names its objects the same way)."""
    return "sha256:" + hashlib.sha256(npy).hexdigest()
