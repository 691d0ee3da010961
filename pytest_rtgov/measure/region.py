"""A measured region: wall and CPU clocks, a memory probe and, on cupy, GPU events.

This is the per-test hot path, so it trades a little elegance for speed: a region
is a ``(wall, cpu)`` tuple and closing it returns the sample as a builtin dict
(the shape of :meth:`pytest_rtgov.core.records.Sample.to_dict`, which is what
travels on xdist's wire anyway); ``Sample(**sample)`` makes the record.
"""

from __future__ import annotations

from typing import Any

from pytest_rtgov.measure.clock import cpu_ns, wall_ns
from pytest_rtgov.measure.gpu import GpuProbe
from pytest_rtgov.measure.memory import MemoryProbe

__all__ = ["Meter"]


class Meter:
    """Opens and closes regions.

    Probes start before the clocks and stop after them, so the probes' own cost
    stays out of wall and CPU time. On cupy the end event is synchronised before
    the clocks stop: wall time includes the GPU work the region queued.
    """

    __slots__ = ("_gpu", "_memory", "_relative_to")

    def __init__(
        self, memory: MemoryProbe, gpu: GpuProbe | None = None, *, relative_to: str = ""
    ) -> None:
        self._memory, self._gpu, self._relative_to = memory, gpu, relative_to

    def open(self) -> tuple[int, int]:
        self._memory.start()
        if self._gpu is not None:
            self._gpu.start()
        return wall_ns(), cpu_ns()

    def close(
        self,
        region: tuple[int, int],
        *,
        warmup: bool = False,
        completed: bool = True,
        variant: str = "current",
        block: int = 0,
    ) -> dict[str, Any]:
        gpu_time = gpu_memory = None
        if self._gpu is not None:
            gpu_time, gpu_memory = self._gpu.stop()
        wall, cpu = wall_ns() - region[0], cpu_ns() - region[1]
        memory = self._memory
        peak, evidence = memory.stop()
        if evidence and self._relative_to and evidence.startswith(self._relative_to):
            evidence = evidence[len(self._relative_to) :].lstrip("/")
        sample = {
            "wall_ns": wall,
            "cpu_ns": cpu,
            "peak_memory_bytes": peak,
            "gpu_time_ns": gpu_time,
            "gpu_memory_bytes": gpu_memory,
            "warmup": warmup,
            "completed": completed,
            "evidence": evidence,
            "variant": variant,
            "block": block,
        }
        if peak is not None:  # which probe measured it (Sample.to_dict leaves None out)
            sample["memory_probe"] = memory.measured_by
        return sample

    def close_probes(self) -> None:
        self._memory.close()
