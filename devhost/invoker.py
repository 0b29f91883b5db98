"""Invokes indexed functions with the Python worker's own binding converters and Core Tools' logs."""
from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import os
import threading
import time
import typing
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func
from azure.functions import meta

from devhost.config import ConfigError
from devhost.indexing import FunctionSpec

log = logging.getLogger("devhost")

InputProvider = Callable[[FunctionSpec, dict[str, Any]], Any]
OutputSink = Callable[[FunctionSpec, dict[str, Any], meta.Datum], None]


class FunctionTimeoutError(Exception):
    """The invocation ran past host.json functionTimeout."""


class FunctionFailedError(Exception):
    """The function raised; the original exception is the cause."""


class _Context(func.Context):
    def __init__(self, spec: FunctionSpec, invocation_id: str) -> None:
        self._spec = spec
        self._invocation_id = invocation_id
        self._tls = threading.local()

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> type[threading.local]:
        return self._tls  # type: ignore[return-value]  # the SDK annotates the type; the worker returns an instance

    @property
    def function_name(self) -> str:
        return self._spec.name

    @property
    def function_directory(self) -> str:
        return os.getcwd()

    @property
    def trace_context(self) -> Any:
        return None

    @property
    def retry_context(self) -> Any:
        return None


class _Out(func.Out[Any]):
    def __init__(self) -> None:
        self.value: Any = None

    def set(self, val: Any) -> None:
        self.value = val

    def get(self) -> Any:
        return self.value


@dataclass
class Invoker:
    """Runs functions: sync ones in a thread pool (as the worker does), async ones on one event loop.

    Input bindings that are not triggers (the Durable client) come from providers registered by
    binding type; output bindings other than `$return` go to registered sinks after success.
    """

    function_timeout: float | None
    inputs: dict[str, InputProvider] = field(default_factory=dict)
    outputs: dict[str, OutputSink] = field(default_factory=dict)

    def __post_init__(self) -> None:
        workers = int(os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT", "0")) or min(32, (os.cpu_count() or 1) + 4)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="func")
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._loop.run_forever, name="func-async", daemon=True)
        self._loop_thread.start()

    def validate(self, spec: FunctionSpec) -> None:
        """Reject at start what the worker would reject at load: annotations no converter accepts."""
        params = inspect.signature(spec.func).parameters
        hints = _type_hints(spec)
        for binding in spec.bindings:
            if binding["name"] == "$return" or binding["type"] == "durableClient":
                continue
            if binding["name"] not in params:
                raise ConfigError(f"function '{spec.name}': binding '{binding['name']}' has no matching parameter")
            _check_annotation(spec, binding, hints.get(binding["name"], inspect.Parameter.empty))

    def invoke(
        self,
        spec: FunctionSpec,
        trigger: meta.Datum,
        *,
        reason: str,
        trigger_metadata: dict[str, meta.Datum] | None = None,
    ) -> meta.Datum | None:
        """Run one invocation; return the encoded `$return` (or implicit trigger output) datum."""
        invocation_id = str(uuid.uuid4())
        log.info("Executing 'Functions.%s' (Reason='%s', Id=%s)", spec.name, reason, invocation_id)
        started = time.monotonic()
        outcome = "Failed"
        try:
            kwargs, outs = self._arguments(spec, trigger, trigger_metadata or {}, invocation_id)
            result = self._run(spec, kwargs, invocation_id)
            encoded = _encode_return(spec, result)
            self._deliver_outputs(spec, outs)
            outcome = "Succeeded"
            return encoded
        finally:
            duration = int((time.monotonic() - started) * 1000)
            log.info("Executed 'Functions.%s' (%s, Id=%s, Duration=%dms)", spec.name, outcome, invocation_id, duration)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._loop.call_soon_threadsafe(self._loop.stop)

    def _arguments(
        self, spec: FunctionSpec, trigger: meta.Datum, metadata: dict[str, meta.Datum], invocation_id: str
    ) -> tuple[dict[str, Any], dict[str, tuple[dict[str, Any], _Out]]]:
        params = inspect.signature(spec.func).parameters
        hints = _type_hints(spec)
        kwargs: dict[str, Any] = {}
        outs: dict[str, tuple[dict[str, Any], _Out]] = {}
        for binding in spec.bindings:
            name = binding["name"]
            if binding is spec.trigger:
                kwargs[name] = _decode(binding, trigger, metadata, hints.get(name, inspect.Parameter.empty))
            elif binding["direction"] == "IN":
                kwargs[name] = self._input(spec, binding)
            elif name != "$return":
                outs[name] = (binding, _Out())
                kwargs[name] = outs[name][1]
        if "context" in params and "context" not in kwargs:
            kwargs["context"] = _Context(spec, invocation_id)
        return kwargs, outs

    def _input(self, spec: FunctionSpec, binding: dict[str, Any]) -> Any:
        provider = self.inputs.get(binding["type"])
        if provider is None:
            raise ConfigError(f"function '{spec.name}': no provider for input binding type '{binding['type']}'")
        return provider(spec, binding)

    def _run(self, spec: FunctionSpec, kwargs: dict[str, Any], invocation_id: str) -> Any:
        if spec.is_async:
            future = asyncio.run_coroutine_threadsafe(spec.func(**kwargs), self._loop)
        else:
            future = self._pool.submit(spec.func, **kwargs)
        try:
            return future.result(timeout=self.function_timeout)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()  # a sync function's thread cannot be stopped; on Azure the host recycles the worker
            message = (f"Timeout value of {_timespan(self.function_timeout)} exceeded by function "
                       f"'Functions.{spec.name}' (Id: '{invocation_id}'). Initiating cancellation.")
            log.error(message)
            raise FunctionTimeoutError(message) from exc
        except Exception as exc:
            log.error("Function 'Functions.%s' failed: %s: %s", spec.name, type(exc).__name__, exc, exc_info=exc)
            raise FunctionFailedError(str(exc)) from exc

    def _deliver_outputs(self, spec: FunctionSpec, outs: dict[str, tuple[dict[str, Any], _Out]]) -> None:
        for binding, out in outs.values():
            if out.value is None:
                continue
            converter = meta.get_binding_registry().get(binding["type"])
            datum = converter.encode(out.value, expected_type=None)
            self.outputs[binding["type"]](spec, binding, datum)


def _timespan(seconds: float | None) -> str:
    whole = int(seconds or 0)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _type_hints(spec: FunctionSpec) -> dict[str, Any]:
    """Resolved annotations, as the worker reads them: postponed (string) annotations work."""
    try:
        return typing.get_type_hints(spec.func)
    except Exception as exc:  # the worker fails to load such a function too
        raise ConfigError(f"function '{spec.name}': cannot resolve its type annotations: {exc}") from exc


def _converter(binding_type: str) -> Any:
    return meta.get_binding_registry().get(binding_type)


def _check_annotation(spec: FunctionSpec, binding: dict[str, Any], annotation: Any) -> None:
    if annotation is inspect.Parameter.empty or binding["direction"] == "OUT":
        return
    if not isinstance(annotation, type):
        # The worker's own words (azure-functions-python-worker functions.py) for list[str], dict[str, Any], ...
        raise ConfigError(f"cannot load the {spec.name} function: binding {binding['name']} has invalid "
                          f"non-type annotation {annotation}")
    converter = _converter(binding["type"])
    if converter is not None and converter.check_input_type_annotation(annotation):
        return
    if annotation in (str, bytes):
        return
    raise ConfigError(
        f"function '{spec.name}': the type of binding '{binding['name']}' ({binding['type']}) "
        f"does not match its Python annotation {annotation!r}"
    )


def _decode(binding: dict[str, Any], datum: meta.Datum, metadata: dict[str, meta.Datum], annotation: Any) -> Any:
    converter = _converter(binding["type"])
    if annotation in (str, bytes) and not (converter and converter.check_input_type_annotation(annotation)):
        value = datum.value
        if annotation is str and isinstance(value, bytes):
            return value.decode("utf-8")
        return value
    return converter.decode(datum, trigger_metadata=metadata)


def _encode_return(spec: FunctionSpec, result: Any) -> meta.Datum | None:
    returns = [b for b in spec.bindings if b["name"] == "$return"]
    if returns:
        if result is None:
            return None
        return _converter(returns[0]["type"]).encode(result, expected_type=type(result))
    converter = _converter(spec.trigger_type)
    if converter is not None and converter.has_implicit_output():
        return converter.encode(result, expected_type=type(result))
    return None
