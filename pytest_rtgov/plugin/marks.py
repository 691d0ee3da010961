"""Collection: how each collected test is measured (rounds, A/B, memory), read from
its marks.

Registered on every process that collects. It stores, per item, the rounds spec of
its ``rtgov`` marker (or the gates' ``[defaults] rounds``), whether it runs the A/B
loop, whether the ``auto`` memory mode measures it precisely (a ``peak_memory`` gate
selects it, or ``memory=True`` on its marker), and a bad marker's message; the capture
plugin reads them from ``item.stash``.
"""

from __future__ import annotations

import fnmatch
from typing import Any

import pytest

from pytest_rtgov.core.rounds import RoundsSpec, parse_rounds_marker
from pytest_rtgov.errors import RtgovError
from pytest_rtgov.plugin.memory_select import PRECISE_KEY
from pytest_rtgov.plugin.settings import Settings

__all__ = ["AB_KEY", "SPEC_KEY", "USAGE_KEY", "Marks"]

SPEC_KEY = pytest.StashKey[RoundsSpec]()
AB_KEY = pytest.StashKey[bool]()
USAGE_KEY = pytest.StashKey[str]()


class Marks:
    """The ``pytest_collection_modifyitems`` of a measuring session."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        settings = self.settings
        if settings.default_rounds is not None:
            spec = RoundsSpec(rounds=int(settings.default_rounds["rounds"]), warmup=1)
            globs = settings.default_rounds["tests"]
            markers = set(settings.default_rounds["markers"])
            for item in items:
                # a marker that sets neither rounds nor warmup (memory=True) keeps them
                if _sets_no_rounds(item.get_closest_marker("rtgov")) and _selected(
                    item, globs, markers
                ):
                    item.stash[SPEC_KEY] = spec
        if settings.ab is not None:
            ab_tests, ab_markers = settings.ab["tests"], set(settings.ab["markers"])
            for item in items:
                if _selected(item, ab_tests, ab_markers):
                    item.stash[AB_KEY] = True
        precise = settings.memory_mode == "auto"
        memory = settings.memory_select
        if precise and memory is not None:
            memory_tests, memory_markers = memory["tests"], set(memory["markers"])
            for item in items:
                if _selected(item, memory_tests, memory_markers):
                    item.stash[PRECISE_KEY] = True
        problems = []
        parents: dict[int, Any] = {}
        for item in items:
            marker = _closest_rtgov_marker(item, parents)
            if marker is None:
                continue
            try:
                spec = parse_rounds_marker(marker.args, marker.kwargs)
                if precise and spec.memory:
                    item.stash[PRECISE_KEY] = True
                if not (_sets_no_rounds(marker) and SPEC_KEY in item.stash):
                    item.stash[SPEC_KEY] = spec
            except RtgovError as exc:
                problems.append((item, f"{item.nodeid}: {exc}"))
        if not problems:
            return
        if not settings.is_worker:
            raise pytest.UsageError("\n".join(message for _, message in problems))
        # A UsageError raised inside an xdist worker's collection crashes the
        # controller. Instead the test errors with the message and the controller
        # turns the session's exit status into a usage error (4).
        for item, message in problems:
            item.stash[USAGE_KEY] = message
            if isinstance(item, pytest.Function):
                item.obj = _raiser(message)


def _selected(item: pytest.Item, globs: list[str], markers: set[str]) -> bool:
    return any(fnmatch.fnmatchcase(item.nodeid, p) for p in globs) or any(
        m.name in markers for m in item.iter_markers()
    )


def _sets_no_rounds(marker: Any) -> bool:
    """No ``rtgov`` marker, or one that sets neither ``rounds`` nor ``warmup``."""
    return marker is None or not ({"rounds", "warmup"} & set(marker.kwargs) or marker.args)


def _closest_rtgov_marker(item: pytest.Item, parents: dict[int, Any]) -> Any:
    """``item.get_closest_marker("rtgov")``, the parents' answer cached in ``parents``
    (by id; a collection's nodes outlive it): walking every item's whole chain of
    nodes costs microseconds per test."""
    for mark in item.own_markers:
        if mark.name == "rtgov":
            return mark
    parent = item.parent
    key = id(parent)
    if key not in parents:
        found, node = None, parent
        while node is not None and found is None:
            found = next((m for m in node.own_markers if m.name == "rtgov"), None)
            node = node.parent
        parents[key] = found
    return parents[key]


def _raiser(message: str) -> Any:
    def invalid_rtgov_marker(*args: Any, **kwargs: Any) -> None:
        raise pytest.UsageError(message)

    return invalid_rtgov_marker
