"""Canonical JSON: one byte string per value, so records hash and diff stably.

Keys sorted, no insignificant whitespace, UTF-8, and non-finite floats refused
(JSON has no NaN). The layout follows RFC 8785's spirit for the data we write
(strings, integers, finite floats, lists, objects); floats use Python's shortest
round-trip repr.

>>> canonical_json({"b": 1, "a": [1.5, "x"]})
b'{"a":[1.5,"x"],"b":1}'
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["PRESORTED_ENCODER", "canonical_json", "pretty_json"]

# canonical_json's settings without sorting: for values whose dicts already come with
# their keys in sorted order (the records' to_dict methods), whose canonical bytes it
# then makes in about half the time.
PRESORTED_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_json(value: Any) -> bytes:
    """Compact canonical bytes of ``value``; raises ``ValueError`` on NaN or infinity."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def pretty_json(value: Any) -> str:
    """Sorted, indented JSON for files people review (same content as canonical)."""
    return json.dumps(value, sort_keys=True, indent=1, ensure_ascii=False, allow_nan=False) + "\n"
