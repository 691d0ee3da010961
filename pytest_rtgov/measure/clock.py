"""The plugin's own clock.

Bound at import time, so tests that monkeypatch ``time.perf_counter_ns`` or
``time.process_time_ns`` (freezegun and friends) cannot disturb our measurements.
"""

from __future__ import annotations

from time import perf_counter_ns as wall_ns
from time import process_time_ns as cpu_ns
from time import time_ns as epoch_ns

__all__ = ["cpu_ns", "epoch_ns", "wall_ns"]
