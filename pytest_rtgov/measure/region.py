"""A measured region: wall and CPU clocks, a memory probe and, on cupy, GPU events."""

from __future__ import annotations

from dataclasses import dataclass

from pytest_rtgov.core.records import Sample
from pytest_rtgov.measure.clock import cpu_ns, wall_ns
from pytest_rtgov.measure.gpu import GpuProbe
from pytest_rtgov.measure.memory import MemoryProbe

__all__ = ["Meter", "OpenRegion"]


@dataclass(slots=True)
class OpenRegion:
    wall_start: int
    cpu_start: int


class Meter:
    """Opens and closes regions; closing returns a :class:`Sample`.

    Probes start before the clocks and stop after them, so the probes' own cost
    stays out of wall and CPU time. On cupy the end event is synchronised before
    the clocks stop: wall time includes the GPU work the region queued.
    """

    __slots__ = ("_gpu", "_memory", "_relative_to")

    def __init__(
        self, memory: MemoryProbe, gpu: GpuProbe | None = None, *, relative_to: str = ""
    ) -> None:
        self._memory, self._gpu, self._relative_to = memory, gpu, relative_to

    def open(self) -> OpenRegion:
        self._memory.start()
        if self._gpu is not None:
            self._gpu.start()
        return OpenRegion(wall_ns(), cpu_ns())

    def close(self, region: OpenRegion, *, warmup: bool = False, completed: bool = True) -> Sample:
        gpu_time = gpu_memory = None
        if self._gpu is not None:
            gpu_time, gpu_memory = self._gpu.stop()
        wall, cpu = wall_ns() - region.wall_start, cpu_ns() - region.cpu_start
        peak, evidence = self._memory.stop()
        if evidence and self._relative_to and evidence.startswith(self._relative_to):
            evidence = evidence[len(self._relative_to) :].lstrip("/")
        return Sample(
            wall_ns=wall,
            cpu_ns=cpu,
            peak_memory_bytes=peak,
            gpu_time_ns=gpu_time,
            gpu_memory_bytes=gpu_memory,
            warmup=warmup,
            completed=completed,
            evidence=evidence,
        )

    def close_probes(self) -> None:
        self._memory.close()
