"""``@stage``: a fixture whose named arrays are cached, signed and checked.

::

    from pytest_rtgov import stage

    @stage(params={"epochs": 8, "lr": 1e-3}, seeds={"init": 7}, env=["OMP_NUM_THREADS"])
    def pretrain(dataset, params, seeds, rtgov):
        weights = train(dataset["x"], dataset["y"], **params, seed=seeds["init"])
        rtgov.record("train_loss", weights.loss)
        return {"w1": weights.w1, "b1": weights.b1}, {"epochs": params["epochs"]}

The function returns a mapping of names to arrays (numpy or cupy), or ``(arrays,
metadata)`` with JSON-able metadata. Requesting ``params`` or ``seeds`` hands it copies of
the declared values; other arguments are fixtures, upstream stages among them. Tests and
later stages receive a :class:`StageResult` (a read-only mapping of the arrays).

In a ``--rtgov``/``--rtgov-gate`` session the stage's key is computed before its body
(``core/stages.py``), and a verified entry under that key is served instead of running
it; otherwise the body runs and its outputs are stored and signed. Without rtgov the
body runs every time (nothing is cached: there is no key to sign with).
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from pytest_rtgov.core.canonical import canonical_json
from pytest_rtgov.core.stages import (
    StageDefinitionError,
    check_json_value,
    stage_name_ok,
)

__all__ = ["StageResult", "stage"]

_INJECTED = ("params", "seeds")
_OUTPUT_NAME = "letters, digits, '_', '.' or '-', starting with a letter or '_'"
_REGISTRY: pytest.StashKey[dict[str, tuple[bytes, str]]] = pytest.StashKey()
_CACHE: pytest.StashKey[Any] = pytest.StashKey()


class StageResult(Mapping[str, Any]):
    """A stage's value: its arrays by name, its metadata, and how this session got them."""

    _rtgov_stage_result = True
    __slots__ = ("arrays", "event", "key", "metadata", "outcome", "outputs", "reason", "stage")

    def __init__(
        self,
        stage: str,
        arrays: Mapping[str, Any],
        metadata: Mapping[str, Any],
        *,
        key: str = "",
        outputs: Mapping[str, str] | None = None,
        outcome: str = "uncached",
        reason: str = "",
        event: dict[str, Any] | None = None,
    ) -> None:
        self.stage = stage
        self.arrays = dict(arrays)
        self.metadata = dict(metadata)
        self.key = key
        self.outputs = dict(outputs or {})
        self.outcome = outcome
        self.reason = reason
        self.event = event

    def __getitem__(self, name: str) -> Any:
        return self.arrays[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.arrays)

    def __len__(self) -> int:
        return len(self.arrays)

    def __repr__(self) -> str:
        names = sorted(self.arrays)
        return f"<StageResult {self.stage} {self.outcome} key={self.key[:12]} {names}>"


def _place(function: Callable[..., Any]) -> str:
    try:
        return f"{inspect.getsourcefile(function)}:{inspect.getsourcelines(function)[1]}"
    except (OSError, TypeError):
        return getattr(function, "__qualname__", "?")


def stage(
    function: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    scope: str = "session",
    params: Mapping[str, Any] | None = None,
    seeds: Mapping[str, Any] | None = None,
    env: Sequence[str] = (),
    autouse: bool = False,
) -> Any:
    """Declare a stage fixture (see the module docstring). ``scope``: session or module.
    ``env``: the environment variables its numerics depend on (thread counts); their
    values are part of its key."""

    def decorate(fn: Callable[..., Any]) -> Any:
        __tracebackhide__ = True  # a bad declaration's traceback ends at the user's line
        stage_name = name or fn.__name__
        place = _place(fn)
        if not stage_name_ok(stage_name):
            raise StageDefinitionError(
                f"stage {stage_name!r} ({place}): expected a name of {_OUTPUT_NAME}"
            )
        if scope not in ("session", "module"):
            raise StageDefinitionError(
                f"stage {stage_name!r} ({place}): scope {scope!r}, expected 'session' or 'module'"
            )
        declared = {"params": dict(params or {}), "seeds": dict(seeds or {})}
        for what, value in declared.items():
            try:
                check_json_value(value, f"stage {stage_name!r} ({place}): {what}")
            except StageDefinitionError as exc:  # raised here: the user's line is the last
                raise StageDefinitionError(str(exc)) from None
        variables = tuple(sorted(set(env)))
        for variable in variables:
            if not isinstance(variable, str) or not variable:
                raise StageDefinitionError(
                    f"stage {stage_name!r} ({place}): env lists {variable!r}, expected "
                    "environment variable names"
                )
        signature = inspect.signature(fn)
        wanted = [p for p in signature.parameters if p not in _INJECTED]
        spec = _Spec(stage_name, fn, place, declared, variables, wanted, list(signature.parameters))
        fixture_args = [a for a in wanted if a != "request"]

        @functools.wraps(fn)
        def wrapper(request: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True  # a failing body's traceback is the user's code
            try:
                return _run(spec, request, kwargs)
            except StageDefinitionError as exc:  # it names the stage and its place
                message = str(exc)
            pytest.fail(message, pytrace=False)  # outside the except: no chained exception

        wrapper.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [
                inspect.Parameter(arg, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                for arg in ["request", *fixture_args]
            ]
        )
        # pytest sees the signature above (inspect.signature stops at __signature__; pytest
        # 8's get_real_func at its own fixture wrapper); __wrapped__ stays so its messages
        # (a fixture cycle) show fn where the user wrote it.
        wrapper._rtgov_stage = spec  # type: ignore[attr-defined]
        return pytest.fixture(scope=scope, name=stage_name, autouse=autouse)(  # type: ignore[call-overload]
            wrapper
        )

    return decorate(function) if function is not None else decorate


class _Spec:
    __slots__ = ("arguments", "declared", "env", "function", "name", "place", "wanted")

    def __init__(
        self,
        name: str,
        function: Callable[..., Any],
        place: str,
        declared: dict[str, dict[str, Any]],
        env: tuple[str, ...],
        wanted: list[str],
        arguments: list[str],
    ) -> None:
        self.name, self.function, self.place = name, function, place
        self.declared, self.env, self.wanted, self.arguments = declared, env, wanted, arguments


# -- the body's value ---------------------------------------------------------------------


def _is_cupy(array: Any) -> bool:
    return type(array).__module__.startswith("cupy")


def _host(array: Any) -> Any:
    return array.get() if _is_cupy(array) else array


def _check_value(spec: _Spec, value: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    import numpy as np

    metadata: Any = {}
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], Mapping):
        value, metadata = value
    where = f"stage {spec.name!r} ({spec.place})"
    if not isinstance(value, Mapping):
        raise StageDefinitionError(
            f"{where} returned a {type(value).__name__}, expected a mapping of names to "
            "arrays, or (arrays, metadata)"
        )
    if not value:
        raise StageDefinitionError(f"{where} returned no arrays, expected at least one")
    if not isinstance(metadata, Mapping):
        raise StageDefinitionError(
            f"{where}: metadata is a {type(metadata).__name__}, expected a mapping"
        )
    check_json_value(dict(metadata), f"{where}: metadata")
    arrays: dict[str, Any] = {}
    for output, array in value.items():
        if not isinstance(output, str) or not stage_name_ok(output):
            raise StageDefinitionError(f"{where}: output name {output!r}, expected {_OUTPUT_NAME}")
        if not (isinstance(array, np.ndarray) or _is_cupy(array)):
            raise StageDefinitionError(
                f"{where}: output {output!r} is a {type(array).__module__}."
                f"{type(array).__qualname__}, expected a numpy or cupy array"
            )
        if array.dtype.hasobject:
            raise StageDefinitionError(
                f"{where}: output {output!r} has dtype object, expected numbers (no pickles)"
            )
        arrays[output] = array
    return arrays, dict(metadata)


# -- a session's stage --------------------------------------------------------------------


def _run(spec: _Spec, request: Any, kwargs: dict[str, Any]) -> StageResult:
    __tracebackhide__ = True
    config = request.config
    registry = config.stash.setdefault(_REGISTRY, {})
    declared = canonical_json(spec.declared)
    seen = registry.setdefault(spec.name, (declared, spec.place))
    if seen[0] != declared:
        raise StageDefinitionError(
            f"stage {spec.name!r} is requested with two param sets in this session: "
            f"{seen[1]} declares {seen[0].decode()}, {spec.place} declares {declared.decode()}"
        )
    call = {name: value for name, value in kwargs.items() if name in spec.arguments}
    if "request" in spec.arguments:
        call["request"] = request
    for injected in _INJECTED:
        if injected in spec.arguments:
            call[injected] = copy.deepcopy(spec.declared[injected])
    from pytest_rtgov.plugin.settings import CAPTURE_KEY, SETTINGS_KEY

    settings = config.stash.get(SETTINGS_KEY, None)
    capture = config.stash.get(CAPTURE_KEY, None)
    if settings is None or capture is None:
        arrays, metadata = _check_value(spec, spec.function(**call))
        return StageResult(spec.name, arrays, metadata, reason="rtgov is off")
    from pytest_rtgov.plugin.stage_key import stage_inputs
    from pytest_rtgov.plugin.stage_session import run_cached

    upstream, functions, fixture_params = stage_inputs(spec, request, kwargs)
    return run_cached(
        spec,
        request=request,
        call=call,
        upstream=upstream,
        functions=functions,
        fixture_params=fixture_params,
        root=Path(config.rootpath),
        settings=settings,
        capture=capture,
        config=config,
    )


