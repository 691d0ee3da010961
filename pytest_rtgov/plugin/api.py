"""The ``rtgov`` fixture object: what tests and fixtures call to record metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from pytest_rtgov.core.records import Metric
    from pytest_rtgov.store.artifacts import ArtifactStore

__all__ = ["Rtgov"]


class Rtgov:
    """Records ML metrics from tests and fixtures.

    A metric belongs to the fixture whose setup is running when it is recorded, or
    else to the current test. Values are validated whether or not measurement is
    switched on, so a NaN loss fails the same way with and without ``--rtgov``.
    """

    __slots__ = ("_artifacts", "_checkpoints", "_progress", "_sink")

    def __init__(
        self,
        sink: Callable[[Metric], None] | None,
        *,
        artifacts: Callable[[], ArtifactStore] | None = None,
        progress: Callable[[str, float | None], Any] | None = None,
        checkpoints: Any = None,
    ) -> None:
        self._sink = sink
        self._checkpoints = checkpoints  # plugin.capture.Capture: checkpoint sinks
        self._artifacts = artifacts
        self._progress = progress

    def progress(self, description: str, total: float | None = None) -> Any:
        """A context manager for long work: ``with rtgov.progress("training", total=8) as
        bar: ... bar.advance(loss=0.31)``. A rich bar on an interactive terminal; silent
        in CI, without a terminal, under ``-q``, in xdist workers and without rtgov."""
        if self._progress is None:
            from pytest_rtgov.plugin.progress import NullProgress

            return NullProgress()
        return self._progress(description, total)

    @property
    def active(self) -> bool:
        """True when this session records (``--rtgov`` or ``--rtgov-gate``)."""
        return self._sink is not None

    def record(
        self, name: str, value: Any, *, unit: str = "", higher_is_better: bool | None = None
    ) -> None:
        """Record a finite number; NaN or infinity raises :class:`InvalidMetricError`."""
        from pytest_rtgov.core.metrics import value_metric  # lazy: keeps the entry point light

        metric = value_metric(name, value, unit=unit, higher_is_better=higher_is_better)
        if self._sink is not None:
            self._sink(metric)

    def record_digest(self, name: str, data: Any) -> str:
        """Record the sha256 digest of bytes or an array; returns ``"sha256:<hex>"``."""
        from pytest_rtgov.core.metrics import digest_metric

        metric = digest_metric(name, data)
        if self._sink is not None:
            self._sink(metric)
            if self._checkpoints is not None:  # also a checkpoint of kind "digest"
                self._checkpoints.digest_checkpoint(metric, data)
        return str(metric.value)

    def checkpoint(self, name: str, array: Any, keep: bool = False) -> str:
        """Record an intermediate array as a checkpoint a replay compares; returns
        ``"sha256:<hex>"`` of its ``.npy`` bytes (a cupy array is copied to the host).

        With ``keep=True`` (or ``--rtgov-keep-checkpoints``) the array's bytes are kept
        in the state directory's object store, so a divergence can be shown element by
        element. Without rtgov the array is checked and nothing is recorded. A bad name,
        a non-array or an object array raises :class:`InvalidMetricError`.
        """
        if self._checkpoints is None:
            from pytest_rtgov.plugin.checkpoints import array_checkpoint

            return array_checkpoint(name, array)
        return str(self._checkpoints.checkpoint(name, array, keep))

    def save_artifact(self, name: str, arrays: Mapping[str, Any]) -> Path | None:
        """Save arrays as a signed ``.npz`` and record its digest as ``artifact:NAME``.

        Returns the file's path, or None when rtgov is off (nothing is saved then).
        """
        if self._artifacts is None or self._sink is None:
            return None
        from pytest_rtgov.core.records import Metric

        path, digest = self._artifacts().save(name, arrays)
        self._sink(Metric(name=f"artifact:{name}", value=digest))
        return path

    def load_artifact(self, name: str) -> dict[str, Any]:
        """The arrays of an artifact this process saved, after its signature verifies.

        Raises :class:`pytest_rtgov.store.sealed.SealError` for a changed file or a bad
        signature, and :class:`pytest_rtgov.errors.RtgovError` when rtgov is off.
        """
        if self._artifacts is None:
            from pytest_rtgov.errors import RtgovError

            raise RtgovError("artifacts are saved and verified only with --rtgov or --rtgov-gate")
        arrays, _ = self._artifacts().load(name)
        return arrays
