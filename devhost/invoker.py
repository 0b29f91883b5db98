"""Invokes indexed functions as the Python worker does, with its binding converters and Core Tools' logs.

Concurrency is the worker's, read from azure-functions-python-worker 4.34 (azure_functions_worker/main.py,
dispatcher.py and constants.py; the worker that runs Python 3.11):
- The worker has one event loop (`asyncio.run` in main.py) and every invocation is a task on it
  (`_handle__invocation_request`): arguments are decoded and results encoded on the loop.
- A sync function runs through `loop.run_in_executor(self._sync_call_tp, ...)`: one ThreadPoolExecutor of
  PYTHON_THREADPOOL_THREAD_COUNT threads. Unset, or not an integer >= 1 (logged and ignored), it is
  `ThreadPoolExecutor(max_workers=None)` on Python 3.9+ (`_get_sync_tp_max_workers`): min(32, CPUs + 4).
- An async function is awaited on the loop itself, so one that blocks stalls every other invocation. The
  worker sets no default executor, so `asyncio.to_thread` and `run_in_executor(None, ...)` use the loop's
  own lazily created pool (CPython's base_events: min(32, CPUs + 4) threads named asyncio_N), not the
  sync pool.
- FUNCTIONS_WORKER_PROCESS_COUNT (default 1, at most 10) makes the host start that many worker processes,
  each with its own pool and loop. devhost is one process and runs one worker: it refuses any other value
  rather than pretend (Durable's in-memory engine and devhost's listeners cannot span processes).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import inspect
import logging
import os
import threading
import time
import typing
import uuid
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import azure.functions as func
from azure.functions import meta

from devhost.config import ConfigError
from devhost.indexing import FunctionSpec

log = logging.getLogger("devhost")

InputProvider = Callable[[FunctionSpec, dict[str, Any]], Any]
OutputSink = Callable[[FunctionSpec, dict[str, Any], meta.Datum], None]
EncodedOutput = tuple[dict[str, Any], meta.Datum]

THREAD_COUNT_SETTING = "PYTHON_THREADPOOL_THREAD_COUNT"
PROCESS_COUNT_SETTING = "FUNCTIONS_WORKER_PROCESS_COUNT"


class FunctionTimeoutError(Exception):
    """The invocation ran past host.json functionTimeout."""


class FunctionFailedError(Exception):
    """The function raised; the original exception is the cause."""


class InvocationCancelledError(FunctionFailedError):
    """The host stopped before the invocation finished: it was cancelled, or never started."""


def configured_sync_threads(environ: Mapping[str, str] = os.environ) -> int | None:
    """PYTHON_THREADPOOL_THREAD_COUNT as the worker reads it; None means ThreadPoolExecutor's default."""
    value = environ.get(THREAD_COUNT_SETTING)
    if value is None:
        return None
    try:
        count = int(value)
    except ValueError:
        log.warning("%s must be an integer", THREAD_COUNT_SETTING)  # the worker's words, then its default
        return None
    if count < 1:
        log.warning("%s must be set to a value between 1 and sys.maxint. Reverting to default value for "
                    "max_workers", THREAD_COUNT_SETTING)
        return None
    return count


def check_single_worker_process(environ: Mapping[str, str] = os.environ) -> None:
    """Refuse FUNCTIONS_WORKER_PROCESS_COUNT other than 1: devhost runs exactly one worker."""
    value = environ.get(PROCESS_COUNT_SETTING, "1")
    if value.strip() != "1":
        raise ConfigError(
            f"{PROCESS_COUNT_SETTING}={value}: devhost runs one Python worker (one thread pool for sync functions, "
            f"one event loop for async ones) in its own process and cannot run more; unset {PROCESS_COUNT_SETTING} "
            f"or set it to 1, and size the worker with {THREAD_COUNT_SETTING} instead")


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


class _Gauge:
    """How many of something are running, with a wait for none."""

    def __init__(self) -> None:
        self._count = 0
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        with self._changed:
            self._count += 1
        try:
            yield
        finally:
            with self._changed:
                self._count -= 1
                self._changed.notify_all()

    def wait_for_zero(self, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._count == 0, max(timeout, 0))


class _Out(func.Out[Any]):
    def __init__(self) -> None:
        self.value: Any = None

    def set(self, val: Any) -> None:
        self.value = val

    def get(self) -> Any:
        return self.value


@dataclass
class Invoker:
    """Runs functions as the Python worker does: each invocation a task on one event loop, sync functions
    on one thread pool (see the module docstring).

    Input bindings that are not triggers (the Durable client) come from providers registered by
    binding type; output bindings other than `$return` go to registered sinks after success, from the
    calling thread, as the host (not the worker) writes them.
    """

    function_timeout: float | None
    inputs: dict[str, InputProvider] = field(default_factory=dict)
    outputs: dict[str, OutputSink] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # No thread_name_prefix: the worker's pool names its threads ThreadPoolExecutor-N_M too.
        self._sync_pool = concurrent.futures.ThreadPoolExecutor(max_workers=configured_sync_threads())
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._loop.run_forever, name="worker-loop", daemon=True)
        self._loop_thread.start()
        self._callers = _Gauge()  # invoke() calls that have not returned
        self._on_loop = _Gauge()  # invocation tasks on the loop
        self._on_pool = _Gauge()  # sync functions running on the pool
        self._lock = threading.Lock()
        self._closed = False
        self._tasks: set[concurrent.futures.Future[Any]] = set()

    @property
    def sync_threads(self) -> int:
        """The sync pool's size (the worker reads the same attribute to log it)."""
        return self._sync_pool._max_workers

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
            with self._callers.counting():
                returned, outputs = self._await(
                    spec, invocation_id, lambda: self._call(spec, trigger, trigger_metadata or {}, invocation_id))
                self._deliver_outputs(spec, outputs)
            outcome = "Succeeded"
            return returned
        finally:
            duration = int((time.monotonic() - started) * 1000)
            log.info("Executed 'Functions.%s' (%s, Id=%s, Duration=%dms)", spec.name, outcome, invocation_id, duration)

    def drain(self, deadline: float) -> bool:
        """Wait until no invoke() call is running or until `deadline` (time.monotonic()); True if none is."""
        return self._callers.wait_for_zero(deadline - time.monotonic())

    def close(self, grace: float = 1.0) -> bool:
        """Refuse new invocations and cancel running ones; True if no function code runs any more.

        Cancelling raises CancelledError at an async function's current await (its `finally` blocks get
        up to `grace` seconds to run); a sync function's thread cannot be stopped, so it keeps running: the
        caller decides whether to wait for it (on Azure the host kills the worker process).
        """
        with self._lock:
            self._closed = True
            running = list(self._tasks)
        for task in running:
            task.cancel()
        unwound = self._on_loop.wait_for_zero(grace)
        self._sync_pool.shutdown(wait=False, cancel_futures=True)
        self._loop.call_soon_threadsafe(self._loop.stop)
        return unwound and self._on_pool.wait_for_zero(0)

    def _await(self, spec: FunctionSpec, invocation_id: str,
               call: Callable[[], Coroutine[Any, Any, tuple[meta.Datum | None, list[EncodedOutput]]]],
               ) -> tuple[meta.Datum | None, list[EncodedOutput]]:
        """Run `call()` as a task on the loop and wait for it, as the host waits for the worker's answer."""
        with self._lock:
            if self._closed:
                raise InvocationCancelledError("the host is stopping")
            task = asyncio.run_coroutine_threadsafe(call(), self._loop)
            self._tasks.add(task)
        try:
            return task.result(timeout=self.function_timeout)
        except concurrent.futures.TimeoutError as exc:
            task.cancel()  # a sync function's thread cannot be stopped; on Azure the host recycles the worker
            message = (f"Timeout value of {_timespan(self.function_timeout)} exceeded by function "
                       f"'Functions.{spec.name}' (Id: '{invocation_id}'). Initiating cancellation.")
            log.error(message)
            raise FunctionTimeoutError(message) from exc
        except concurrent.futures.CancelledError as exc:
            if not self._closed:  # the function let a CancelledError of its own escape
                log.error("Function 'Functions.%s' failed: it was cancelled", spec.name)
                raise FunctionFailedError("the function was cancelled") from exc
            log.warning("Function 'Functions.%s' (Id: %s) was cancelled: the host is stopping",
                        spec.name, invocation_id)
            raise InvocationCancelledError("the host is stopping") from None
        finally:
            with self._lock:
                self._tasks.discard(task)

    async def _call(self, spec: FunctionSpec, trigger: meta.Datum, metadata: dict[str, meta.Datum],
                    invocation_id: str) -> tuple[meta.Datum | None, list[EncodedOutput]]:
        """One invocation on the loop: decode the arguments, run the function, encode what it returned."""
        with self._on_loop.counting():
            kwargs, outs = self._arguments(spec, trigger, metadata, invocation_id)
            try:
                if spec.is_async:
                    result = await spec.func(**kwargs)
                else:
                    result = await self._loop.run_in_executor(
                        self._sync_pool, self._run_sync, functools.partial(spec.func, **kwargs))
            except Exception as exc:
                log.error("Function 'Functions.%s' failed: %s: %s", spec.name, type(exc).__name__, exc, exc_info=exc)
                raise FunctionFailedError(str(exc)) from exc
            return _encode_return(spec, result), _encode_outputs(outs)

    def _run_sync(self, call: Callable[[], Any]) -> Any:
        with self._on_pool.counting():
            return call()

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

    def _deliver_outputs(self, spec: FunctionSpec, outputs: list[EncodedOutput]) -> None:
        for binding, datum in outputs:
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


def _encode_outputs(outs: dict[str, tuple[dict[str, Any], _Out]]) -> list[EncodedOutput]:
    """The values set on output parameters, encoded (None means not set, and sends nothing)."""
    return [(binding, _converter(binding["type"]).encode(out.value, expected_type=None))
            for binding, out in outs.values() if out.value is not None]


def _encode_return(spec: FunctionSpec, result: Any) -> meta.Datum | None:
    # The registry's converters are untyped; azure.functions' OutConverter.encode returns Datum | None.
    returns = [b for b in spec.bindings if b["name"] == "$return"]
    if returns:
        if result is None:
            return None
        return cast(meta.Datum | None, _converter(returns[0]["type"]).encode(result, expected_type=type(result)))
    converter = _converter(spec.trigger_type)
    if converter is not None and converter.has_implicit_output():
        return cast(meta.Datum | None, converter.encode(result, expected_type=type(result)))
    return None
