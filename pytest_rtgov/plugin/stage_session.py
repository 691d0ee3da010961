"""A stage in a measuring session: key, lock, verified hit or execution, store, event.

The event (``StageResult.event``) goes into the fixture setup's record (``capture.py``
adds it), and from there into the run record and one ``stage`` ledger leaf
(``core/ledger_records.py``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from pytest_rtgov.core.records import Metric
from pytest_rtgov.core.stages import (
    KeyInputs,
    StageDefinitionError,
    Upstream,
    output_differences,
    provenance_statement,
)
from pytest_rtgov.errors import RtgovError
from pytest_rtgov.measure.environment import distribution_version
from pytest_rtgov.plugin.settings import CAPTURE_KEY, SETTINGS_KEY
from pytest_rtgov.plugin.stage_key import _blas, key_inputs, stage_inputs
from pytest_rtgov.plugin.stages import (
    _CACHE,
    StageResult,
    _check_value,
    _host,
    _is_cupy,
    _Spec,
)
from pytest_rtgov.store.stage_cache import Lookup, StageCache, array_bytes, load_array, open_backend
from pytest_rtgov.store.stage_code import code_digests

__all__ = ["discard", "prepare", "run_cached", "warm_up"]


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _cache(config: pytest.Config, settings: Any) -> StageCache:
    cache = config.stash.get(_CACHE, None)
    if cache is None:
        url = config.getoption("rtgov_stage_store", None) or ""
        backend = open_backend(str(url), state_dir=settings.state_dir)
        cache = StageCache(
            backend,
            signer=settings.signing.signer,
            trust=settings.trust,
            lock_dir=settings.state_dir / "stages" / "locks",
        )
        config.stash[_CACHE] = cache
    return cache


def _rechecked(config: pytest.Config, name: str) -> bool:
    text = str(config.getoption("rtgov_stage_recheck", None) or "")
    wanted = {part.strip() for part in text.split(",") if part.strip()}
    return name in wanted or "all" in wanted


def _objects(arrays: Mapping[str, Any]) -> dict[str, bytes]:
    """Each array's ``.npy`` bytes (copied to the host first): what is stored and hashed."""
    return {name: array_bytes(_host(array)) for name, array in sorted(arrays.items())}


def _digests(objects: Mapping[str, bytes]) -> dict[str, str]:
    return {name: hashlib.sha256(blob).hexdigest() for name, blob in objects.items()}


def _to_device(arrays: dict[str, Any], device: str) -> dict[str, Any]:
    if device != "cupy":
        return arrays
    try:
        import cupy
    except ImportError:  # a cupy entry served to a numpy session: host arrays
        return arrays
    return {name: cupy.asarray(value) for name, value in arrays.items()}


def _moved(
    spec: _Spec,
    *,
    code: Mapping[str, str],
    functions: list[Any],
    root: Path,
    upstream: Mapping[str, StageResult],
    variables: Mapping[str, str],
) -> str | None:
    """The first input that changed while the body ran, or None."""
    try:
        now = code_digests(functions, root=root)
    except (OSError, SyntaxError) as exc:
        return f"code ({exc})"
    for name in sorted(set(code) | set(now)):
        if code.get(name) != now.get(name):
            return f"code {name}"
    for stage_name, result in sorted(upstream.items()):
        digests = _digests(_objects(result.arrays))
        for output in sorted(digests):
            if digests[output] != result.outputs.get(output):
                return f"upstream output {stage_name}/{output} (changed in place)"
    for variable, value in sorted(variables.items()):
        if os.environ.get(variable, "") != value:
            return f"environment variable {variable}"
    return None


def _key(
    spec: _Spec,
    *,
    functions: list[Any],
    upstream: Mapping[str, StageResult],
    fixture_params: Mapping[str, str],
    root: Path,
    backend: str,
) -> tuple[dict[str, str], KeyInputs, str]:
    """The stage's code digests, key inputs and key (``core/stages.py``)."""
    try:
        code = code_digests(functions, root=root)
    except SyntaxError as exc:
        raise StageDefinitionError(
            f"stage {spec.name!r} ({spec.place}): its code does not parse: {exc}"
        ) from exc
    inputs = key_inputs(
        spec, code=code, backend=backend, upstream=upstream, fixture_params=fixture_params
    )
    return code, inputs, inputs.key()


# by id(request): what prepare() found, for the stage it names; taken by run_cached, and
# discarded when the setup ends whatever happened (an id is reused once freed)
_PREPARED: pytest.StashKey[
    dict[int, tuple[str, dict[str, str], KeyInputs, str, Lookup, int]]
] = pytest.StashKey()


def warm_up(config: pytest.Config) -> None:
    """Open the stage cache before the first test (keys loaded, store opened, the BLAS
    read): the first stage then costs what every later one does. A failure here is left
    for the first stage to report."""
    settings = config.stash.get(SETTINGS_KEY, None)
    if settings is None:
        return
    try:
        _cache(config, settings)
        _blas()
    except Exception:  # reported by the stage that needs it, with its own message
        return


def prepare(fixturedef: Any, request: Any, config: pytest.Config) -> bool:
    """Compute a stage's key and look it up before its setup's measured region opens
    (``plugin/capture.py``), so that the region of a hit measures the hit alone and no
    precise memory probe runs for it (what a hit measures is not judged). True when the
    entry verifies. Anything unusual returns False and leaves it to the stage itself,
    which computes again and reports it."""
    spec = getattr(fixturedef.func, "_rtgov_stage", None)
    settings = config.stash.get(SETTINGS_KEY, None)
    capture = config.stash.get(CAPTURE_KEY, None)
    off = config.getoption("rtgov_stage_cache", "on") == "off"  # nothing looked up
    if off or spec is None or settings is None or capture is None or _rechecked(config, spec.name):
        return False
    start = time.perf_counter_ns()
    try:
        kwargs = {name: request.getfixturevalue(name) for name in spec.wanted if name != "request"}
        upstream, functions, params = stage_inputs(spec, request, kwargs)
        code, inputs, key = _key(
            spec,
            functions=functions,
            upstream=upstream,
            fixture_params=params,
            root=Path(config.rootpath),
            backend=capture.backend,
        )
        ups = {name: Upstream(r.stage, r.key, r.outputs) for name, r in upstream.items()}
        found = _cache(config, settings).lookup(spec.name, key, ups)
    except Exception:  # the stage reports it, with its own message
        return False
    elapsed = time.perf_counter_ns() - start
    prepared = (spec.name, code, inputs, key, found, elapsed)
    config.stash.setdefault(_PREPARED, {})[id(request)] = prepared
    return found.status == "valid"


def discard(request: Any, config: pytest.Config) -> None:
    """Forget what :func:`prepare` found for this setup (called when the setup ends)."""
    config.stash.get(_PREPARED, {}).pop(id(request), None)


def run_cached(
    spec: _Spec,
    *,
    request: Any,
    call: dict[str, Any],
    upstream: Mapping[str, StageResult],
    functions: list[Any],
    fixture_params: Mapping[str, str],
    root: Path,
    settings: Any,
    capture: Any,
    config: pytest.Config,
) -> StageResult:
    __tracebackhide__ = True  # a failing body's traceback is the user's code
    started = time.time()
    prepared = config.stash.get(_PREPARED, {}).pop(id(request), None)
    if prepared is not None and prepared[0] != spec.name:
        prepared = None  # another setup's: never served to this stage
    if prepared is not None:  # computed just before this setup's region opened
        _, code, inputs, key, found, key_ns = prepared
    else:
        start = time.perf_counter_ns()
        code, inputs, key = _key(
            spec,
            functions=functions,
            upstream=upstream,
            fixture_params=fixture_params,
            root=root,
            backend=capture.backend,
        )
        key_ns = time.perf_counter_ns() - start
    ups = {name: Upstream(r.stage, r.key, r.outputs) for name, r in upstream.items()}
    event: dict[str, Any] = {
        "stage": spec.name,
        "key": key,
        # computing the key (and, before the measured region, verifying the entry)
        "key_ns": key_ns,
        "key_before_region": prepared is not None,
        "upstream": sorted(r.stage for r in upstream.values()),
    }
    if config.getoption("rtgov_stage_cache", "on") == "off":  # every body runs, none stored
        arrays, metadata = _check_value(spec, spec.function(**call))
        result = StageResult(spec.name, arrays, metadata, key=key, event=event)
        result.outputs = event["outputs"] = dict(sorted(_digests(_objects(arrays)).items()))
        _finish(event, "miss", "stage cache off", result)
        return result
    cache = _cache(config, settings)
    recheck = _rechecked(config, spec.name)
    if prepared is not None and found.status == "valid" and not recheck:
        return _hit(spec, found, key, event, capture)  # verified, its bytes in memory
    with _lock_or_note(cache, key, event):
        found = cache.lookup(spec.name, key, ups)
        if found.status == "valid" and not recheck:
            return _hit(spec, found, key, event, capture)
        variables = {v: os.environ.get(v, "") for v in spec.env}
        value = spec.function(**call)
        arrays, metadata = _check_value(spec, value)
        objects = _objects(arrays)
        outputs = _digests(objects)
        event["outputs"] = dict(sorted(outputs.items()))
        result = StageResult(spec.name, arrays, metadata, key=key, outputs=outputs, event=event)
        if recheck and found.status == "valid":
            return _recheck(spec, found, result, event, capture)
        keep_theirs = False
        if found.status == "refused":
            event["outcome"], event["reason"] = "refused", found.reason
            if settings.trust.required:
                event["fatal"] = True
            elif found.foreign:  # another machine's local key, on a shared store
                keep_theirs = True
                event["reason"] += "; left in place (signed by a key not trusted here)"
            if not keep_theirs:
                try:
                    aside = cache.set_aside(spec.name, key, found.envelope_sha256)
                except (OSError, RtgovError) as exc:  # a store that stopped answering
                    event["reason"] += f"; the entry could not be set aside ({exc})"
                else:
                    if aside is not None:
                        event["set_aside"] = aside
        moved = _moved(spec, code=code, functions=functions, root=root, upstream=upstream,
                       variables=variables)  # fmt: skip
        if moved is not None:
            note = f"not cached: input {moved} changed while the stage ran"
            _finish(event, "miss", note, result)
            return result
        if keep_theirs:
            _finish(event, "miss", "not stored: the key holds that entry", result)
            return result
        metrics = tuple(m.to_dict() for m in _body_metrics(capture))
        subjects, predicate = provenance_statement(
            inputs,
            key=key,
            outputs=outputs,
            metadata=metadata,
            metrics=metrics,
            device="cupy" if any(_is_cupy(a) for a in arrays.values()) else "numpy",
            invocation=f"{settings.run_id}/{settings.worker}",
            started_on=_iso(started),
            finished_on=_iso(time.time()),
            builder_version=distribution_version("pytest-rtgov"),
        )
        try:
            status, envelope = cache.store(spec.name, key, subjects, predicate, objects)
        except (OSError, RtgovError) as exc:
            _finish(event, "miss", f"not stored: {exc}", result)
            return result
        event["envelope_sha256"] = envelope
        if status == "stored":
            _finish(event, "stored", "", result)
            return result
        # Another session stored this key first (shared storage): one value stays.
        other = cache.lookup(spec.name, key, ups)
        if other.status == "valid" and other.sealed is not None:
            diffs = output_differences(other.sealed.outputs, outputs)
            if diffs:
                event["finding"] = (
                    f"nondeterministic: stage {spec.name} under key {key[:12]} stored "
                    f"{'; '.join(diffs)} (cached vs this run)"
                )
                _finish(event, "miss", "another session stored different outputs", result)
            else:
                _finish(event, "miss", "another session stored the same outputs first", result)
        else:
            _finish(event, "miss", f"another session's entry is refused: {other.reason}", result)
        return result


@contextlib.contextmanager
def _lock_or_note(cache: StageCache, key: str, event: dict[str, Any]) -> Iterator[None]:
    """The key's lock; a state directory where it cannot be taken (read-only, full) has
    the stage computed without it, and the event says so."""
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(cache.lock(key))
        except OSError as exc:
            event["lock"] = f"computed without the key's lock ({exc})"
        yield


def _finish(event: dict[str, Any], outcome: str, reason: str, result: StageResult) -> None:
    if event.get("outcome") != "refused":
        event["outcome"] = outcome
        event["reason"] = reason
    elif reason:
        event["reason"] = f"{event['reason']}; {reason}"
    result.outcome, result.reason = event["outcome"], event["reason"]


def _body_metrics(capture: Any) -> list[Metric]:
    stack = capture._fixture_metrics
    return list(stack[-1]) if stack else []


def _entry_value(spec: _Spec, found: Lookup, event: dict[str, Any]) -> StageResult:
    """The entry's value, as dependents get it (arrays back on the GPU for a cupy entry);
    ``event`` already says how this session got it."""
    sealed = found.sealed
    assert sealed is not None
    arrays = _to_device(
        {name: load_array(blob) for name, blob in sorted(found.objects.items())}, sealed.device
    )
    event.update(
        outputs=dict(sorted(sealed.outputs.items())), envelope_sha256=found.envelope_sha256
    )
    return StageResult(
        spec.name,
        arrays,
        sealed.metadata,
        key=event["key"],
        outputs=sealed.outputs,
        outcome=event["outcome"],
        reason=event["reason"],
        event=event,
    )


def _hit(spec: _Spec, found: Lookup, key: str, event: dict[str, Any], capture: Any) -> StageResult:
    assert found.sealed is not None
    for metric in found.sealed.metrics:  # the body's metrics, as it recorded them
        capture.record_metric(Metric(**metric))
    event.update(outcome="hit", reason="", signed_by=list(found.signed_by))
    return _entry_value(spec, found, event)


def _recheck(
    spec: _Spec, found: Lookup, fresh: StageResult, event: dict[str, Any], capture: Any
) -> StageResult:
    """Compare a re-execution with the entry; the entry's value is what dependents get."""
    assert found.sealed is not None
    diffs = output_differences(found.sealed.outputs, fresh.outputs)
    event["outcome"] = "recheck"
    if diffs:
        event["reason"] = "outputs differ from the entry"
        event["finding"] = (
            f"nondeterministic: stage {spec.name} under key {event['key'][:12]}: "
            + "; ".join(diffs)
            + " (cached vs re-executed)"
        )
    else:
        event["reason"] = "re-executed: outputs identical to the entry"
    return _entry_value(spec, found, event)
