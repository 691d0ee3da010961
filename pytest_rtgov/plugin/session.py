"""The measuring session's assembly: one plugin object per role, sharing ``config.stash``.

As pytest's own ``cacheprovider`` registers ``LFPlugin`` and ``NFPlugin`` separately,
:func:`register` resolves the settings and registers, on every process that runs tests:

=====================  ==========================  =========================================
name                   object                      role
=====================  ==========================  =========================================
``rtgov-marks``        ``plugin.marks.Marks``      collection: rounds and A/B of each test
``rtgov-capture``      ``plugin.capture.Capture``  the measured regions, the fixture's sinks
``rtgov-worker``       ``transport.WorkerTransport``  an xdist worker: phases and calibration
                                                   back to the controller
=====================  ==========================  =========================================

and on the controller (the only process without xdist):

=====================  ==================================  =================================
``rtgov-collector``    ``plugin.samples.Collector``        the one fold of every phase
``rtgov-controller``   ``transport.ControllerTransport``   workerinput out, workeroutput in
``rtgov-finish``       ``plugin.finish.Finisher``          the session end's pipeline
``rtgov-summary``      ``plugin.summary.Summary``          the terminal summary
``rtgov-quarantine``   ``plugin.quarantine.SessionQuarantine``  the quarantine file's entries,
                                                   failures they do not excuse (only with
                                                   a ``rtgov.quarantine.json``)
=====================  ==================================  =================================

Shared state: ``config.stash[SETTINGS_KEY]`` (``plugin.settings``), ``[CAPTURE_KEY]``,
``[COLLECTOR_KEY]`` and ``[OUTCOME_KEY]`` (what the session end did).
"""

from __future__ import annotations

import pytest

from pytest_rtgov.plugin.settings import CAPTURE_KEY, COLLECTOR_KEY, SETTINGS_KEY, resolve

__all__ = ["register", "unregister"]

_NAMES = (
    "rtgov-marks",
    "rtgov-capture",
    "rtgov-determinism",
    "rtgov-worker",
    "rtgov-collector",
    "rtgov-controller",
    "rtgov-finish",
    "rtgov-summary",
    "rtgov-quarantine",
)


def register(config: pytest.Config) -> None:
    """Resolve the settings (usage errors: exit 4) and register the role plugins."""
    from pytest_rtgov.logs import log_event
    from pytest_rtgov.measure.allocator import pin as pin_allocator
    from pytest_rtgov.plugin.capture import Capture
    from pytest_rtgov.plugin.marks import Marks

    settings = config.stash[SETTINGS_KEY] = resolve(config)
    # Before any test of this process: a kernel's temporaries cost the same whatever ran
    # before it (measure/allocator.py); recorded in the run record's environment.
    pin_allocator(config.getoption("rtgov_allocator", "pinned"))
    manager = config.pluginmanager
    capture = config.stash[CAPTURE_KEY] = Capture(config, settings)
    manager.register(Marks(settings), "rtgov-marks")
    manager.register(capture, "rtgov-capture")
    if config.getoption("rtgov_determinism_check", False):  # each test twice, compared
        from pytest_rtgov.plugin.determinism import DeterminismCheck

        manager.register(DeterminismCheck(config, capture), "rtgov-determinism")
    if settings.is_worker:
        from pytest_rtgov.plugin.transport import WorkerTransport

        manager.register(WorkerTransport(config, capture), "rtgov-worker")
        return
    from pytest_rtgov.plugin.finish import Finisher
    from pytest_rtgov.plugin.samples import Collector
    from pytest_rtgov.plugin.summary import Summary
    from pytest_rtgov.plugin.transport import ControllerTransport

    collector = config.stash[COLLECTOR_KEY] = Collector(config, settings, capture)
    manager.register(collector, "rtgov-collector")
    manager.register(ControllerTransport(settings, collector), "rtgov-controller")
    manager.register(Finisher(config, settings, collector), "rtgov-finish")
    manager.register(Summary(config, settings), "rtgov-summary")
    from pytest_rtgov.plugin.quarantine import register as register_quarantine

    register_quarantine(config, settings)  # rtgov.quarantine.json, before any test runs
    log_event(
        "session.start",
        run_id=settings.run_id,
        mode=settings.mode,
        memory_mode=settings.memory_mode,
        backend=capture.backend,
        state_dir=str(settings.state_dir),
    )


def unregister(config: pytest.Config) -> None:
    """Close the probes and the log file; unregister every role plugin."""
    capture = config.stash.get(CAPTURE_KEY, None)
    if capture is not None:
        capture.close()
    settings = config.stash.get(SETTINGS_KEY, None)
    if settings is not None:
        settings.close()
    for name in _NAMES:
        plugin = config.pluginmanager.get_plugin(name)
        if plugin is not None:
            config.pluginmanager.unregister(plugin)
