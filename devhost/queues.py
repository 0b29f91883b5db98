"""Storage queue triggers and queue output bindings with the Azure Storage Queues extension's semantics.

Read from the extension's source (azure-sdk-for-net, Microsoft.Azure.WebJobs.Extensions.Storage.Queues v5:
QueueListener, QueueProcessor, QueueListenerFactory, QueueServiceClientProvider) and mirrored here:

Polling, one listener thread and one thread pool per queue-triggered function:
- The trigger queue is NOT created: a missing queue is polled with back-off and the function starts once the
  queue exists. Output bindings and poison moves create queues, as they do on Azure.
- Up to batchSize messages are received at a time; the next batch is fetched as soon as the messages in
  flight drop to newBatchThreshold, so at most batchSize + newBatchThreshold invocations run at once.
- An empty or missing queue is polled again after 100 ms, doubling (randomised by 20%) up to
  maxPollingInterval; a found message resets the delay. A message added by an output binding or a poison
  move wakes that queue's listener at once, like the extension's shared queue watcher.
- Received messages are leased: invisible for `lease_seconds` and renewed at half-time while the function
  runs. The extension leases for 10 minutes; devhost's default of 60 s makes a message abandoned at stop
  (or by a killed devhost) come back within a minute instead of ten.

Each message:
- Received more than maxDequeueCount times (abandoned at its last attempt): moved to the poison queue
  without running the function.
- Body decoded per messageEncoding. With base64 (the default), a body that is not valid base64 (as .NET's
  Convert.FromBase64String judges it: whitespace ignored, length a multiple of 4) is moved to
  `<queue>-poison` AT ONCE, its raw text unchanged, without running the function, and logged with the
  extension's own (misleading) "Message has reached MaxDequeueCount" line. This is the extension's
  MessageDecodingFailed handler since v5 (azure-sdk-for-net PR #18326: "moves message to poison queue
  immediately as retrying it doesn't make much sense"; issues #21449 and #28799 report that the function
  never runs). It is not a failed attempt and does not wait for maxDequeueCount.
- The function receives the decoded body as a 'string' datum (UTF-8, invalid bytes replaced, as .NET
  decodes it) or as 'bytes' when the binding's dataType is binary, with trigger metadata Id, DequeueCount,
  InsertionTime, ExpirationTime, NextVisibleTime and PopReceipt typed as the host sends them.
- Success deletes the message. Failure (the function raised or timed out, or an output failed) moves it to
  `<queue>-poison` (created if missing; a new message with the original raw text) and deletes it when
  dequeueCount >= maxDequeueCount, and otherwise makes it visible again after visibilityTimeout.
- A queue whose name ends in "-poison" has no poison queue: a message that fails there (or cannot be
  decoded) stays invisible until its lease runs out, then comes back; the extension does the same rather
  than loop hot.
"""
from __future__ import annotations

import base64
import binascii
import concurrent.futures
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.functions.meta import Datum
from azure.storage.queue import QueueClient, QueueMessage

from devhost.config import ConfigError, QueueOptions
from devhost.indexing import FunctionSpec
from devhost.invoker import FunctionFailedError, FunctionTimeoutError, Invoker
from devhost.storage import QueueAccounts, queue_name

log = logging.getLogger("devhost")

LEASE_SECONDS = 60.0
POISON_SUFFIX = "-poison"
_MIN_POLLING_INTERVAL = 0.1
_STOP_GRACE_SECONDS = 2.0
_BASE64_WHITESPACE = re.compile(r"[ \t\r\n]")
_GONE_ERROR_CODES = frozenset({"PopReceiptMismatch", "QueueBeingDeleted", "QueueDisabled"})


class MessageDecodingError(Exception):
    """A message body is not valid in the configured messageEncoding."""


def encode_body(body: str | bytes, encoding: str) -> str:
    """The text to store for a message body under host.json messageEncoding ("base64" or "none")."""
    if encoding == "base64":
        raw = body.encode("utf-8") if isinstance(body, str) else body
        return base64.b64encode(raw).decode("ascii")
    return body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body


def decode_body(text: str, encoding: str) -> bytes:
    """The body bytes of a stored message; MessageDecodingError when base64 is expected and it is not."""
    if encoding != "base64":
        return text.encode("utf-8")
    try:
        return base64.b64decode(_BASE64_WHITESPACE.sub("", text), validate=True)
    except binascii.Error as exc:
        raise MessageDecodingError(f"not valid base64: {exc}") from None


def deliver_return_value(invoker: Invoker, spec: FunctionSpec, datum: Datum | None) -> None:
    """Send what a function returned to its `$return` output binding (Invoker.invoke only encodes it)."""
    binding = next((b for b in spec.bindings if b["name"] == "$return"), None)
    if binding is None or datum is None:
        return
    sink = invoker.outputs.get(binding["type"])
    if sink is None:
        raise ConfigError(f"function '{spec.name}': no sink for output binding type '{binding['type']}'")
    sink(spec, binding, datum)


class QueueTriggers:
    """Runs every queueTrigger function off its queue and sends queue output bindings."""

    def __init__(self, functions: list[FunctionSpec], invoker: Invoker, options: QueueOptions,
                 *, lease_seconds: float = LEASE_SECONDS) -> None:
        self._options = options
        self._accounts = QueueAccounts()
        self._watchers = _QueueWatchers()
        self._stopping = threading.Event()
        self._outputs: dict[tuple[str, str], QueueClient] = {}
        self._listeners: list[_Listener] = []
        for spec in functions:
            try:
                self._index(spec, invoker, lease_seconds)
            except ConfigError as exc:
                raise ConfigError(f"Error indexing method 'Functions.{spec.name}': {exc}") from None

    def start(self) -> None:
        """Start one listener per queue-triggered function."""
        for listener in self._listeners:
            listener.start()

    def stop(self) -> None:
        """Stop polling; give in-flight invocations a couple of seconds, then abandon them (their lease lapses)."""
        self._stopping.set()
        self._watchers.wake_all()
        deadline = time.monotonic() + _STOP_GRACE_SECONDS
        drained = [listener.stop(deadline) for listener in self._listeners]
        # An abandoned invocation still completes its message when it returns, so it keeps the clients.
        if all(drained):
            self._accounts.close()

    def send_output(self, spec: FunctionSpec, binding: dict[str, Any], datum: Datum) -> None:
        """Queue output binding: enqueue each message in `datum`, encoded per messageEncoding."""
        queue = self._outputs.get((spec.name, binding["name"])) or self._queue_client(binding)
        for body in _output_bodies(datum):
            send_creating_queue(queue, encode_body(body, self._options.message_encoding))
        self._watchers.notify(queue.url)

    def _index(self, spec: FunctionSpec, invoker: Invoker, lease_seconds: float) -> None:
        """Resolve the function's queue bindings now, so a bad name or connection fails at start."""
        for binding in spec.bindings_of("queue"):
            self._outputs[(spec.name, binding["name"])] = self._queue_client(binding)
        if spec.trigger_type == "queueTrigger":
            self._listeners.append(_Listener(
                spec, invoker, self._options, self._queue_client(spec.trigger), self._poison_client(spec.trigger),
                lease_seconds, self._stopping, self._watchers))

    def _queue_client(self, binding: dict[str, Any]) -> QueueClient:
        return self._accounts.service(binding.get("connection")).get_queue_client(queue_name(binding))

    def _poison_client(self, binding: dict[str, Any]) -> QueueClient | None:
        name = queue_name(binding)
        if name.endswith(POISON_SUFFIX) or len(name) + len(POISON_SUFFIX) > 63:
            return None
        return self._accounts.service(binding.get("connection")).get_queue_client(name + POISON_SUFFIX)


def send_creating_queue(queue: QueueClient, text: str) -> None:
    """Add a message, creating the queue first if it does not exist (the extension's AddMessageAndCreateIfNotExists)."""
    try:
        queue.send_message(text)
    except ResourceNotFoundError:
        try:
            queue.create_queue()
        except ResourceExistsError:
            log.debug("queue '%s' was created concurrently", queue.queue_name)
        queue.send_message(text)


@dataclass
class _QueueWatchers:
    """Wake-up events per queue URL, so a message devhost itself enqueues is picked up without polling delay."""

    _events: dict[str, list[threading.Event]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def register(self, queue_url: str) -> threading.Event:
        event = threading.Event()
        with self._lock:
            self._events.setdefault(queue_url, []).append(event)
        return event

    def notify(self, queue_url: str) -> None:
        with self._lock:
            for event in self._events.get(queue_url, []):
                event.set()

    def wake_all(self) -> None:
        with self._lock:
            for events in self._events.values():
                for event in events:
                    event.set()


class _Backoff:
    """The extension's RandomizedExponentialBackoffStrategy: 100 ms, doubling (+-20%) up to the maximum."""

    def __init__(self, maximum: float) -> None:
        self._maximum = max(maximum, _MIN_POLLING_INTERVAL)
        self._current = 0.0
        self._exponent = 0
        self._found_message = False

    def found_message(self) -> None:
        self._found_message = True

    def next_delay(self) -> float:
        if self._found_message:
            self._found_message = False
            self._current, self._exponent = _MIN_POLLING_INTERVAL, 1
        elif self._current != self._maximum:
            delay = _MIN_POLLING_INTERVAL
            if self._exponent > 0:
                delay += random.uniform(0.8, 1.2) * 2 ** (self._exponent - 1) * _MIN_POLLING_INTERVAL
            if delay < self._maximum:
                self._current, self._exponent = delay, self._exponent + 1
            else:
                self._current = self._maximum
        return self._current


class _Listener:
    """Polls one function's queue and processes its messages in a pool of batchSize + newBatchThreshold threads."""

    def __init__(self, spec: FunctionSpec, invoker: Invoker, options: QueueOptions, queue: QueueClient,
                 poison: QueueClient | None, lease_seconds: float, stopping: threading.Event,
                 watchers: _QueueWatchers) -> None:
        self._spec = spec
        self._invoker = invoker
        self._options = options
        self._queue = queue
        self._poison = poison
        self._lease_seconds = lease_seconds
        self._stopping = stopping
        self._watchers = watchers
        self._wake = watchers.register(queue.url)
        self._in_flight = 0
        self._capacity = threading.Condition()
        self._queue_missing = False
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=options.batch_size + options.new_batch_threshold, thread_name_prefix=f"queue-{spec.name}")
        self._thread = threading.Thread(target=self._poll, name=f"listener-{spec.name}", daemon=True)

    def start(self) -> None:
        log.debug("Storage queue listener started (function='%s', queue name='%s', storage account name='%s')",
                  self._spec.name, self._queue.queue_name, self._queue.account_name)
        self._thread.start()

    def stop(self, deadline: float) -> bool:
        """Stop polling and wait for in-flight invocations until `deadline`; False if some are abandoned."""
        with self._capacity:
            self._capacity.notify_all()
        if self._thread.is_alive():
            self._thread.join(max(deadline - time.monotonic(), 0))
        with self._capacity:
            drained = self._capacity.wait_for(lambda: self._in_flight == 0,
                                              timeout=max(deadline - time.monotonic(), 0))
            if not drained:
                log.warning("function '%s': abandoning %d running invocation(s) at stop; their messages come back "
                            "when their lease lapses", self._spec.name, self._in_flight)
        self._pool.shutdown(wait=False, cancel_futures=True)
        return drained

    def _poll(self) -> None:
        backoff = _Backoff(self._options.max_polling_interval)
        while not self._stopping.is_set():
            batch = self._receive()
            if self._stopping.is_set():
                break  # the pool may be gone; a batch received meanwhile comes back when its lease lapses
            if batch:
                backoff.found_message()
                for message in batch:
                    self._dispatch(message)
                self._wait_for_new_batch_threshold()
            else:
                self._wake.wait(backoff.next_delay())
                self._wake.clear()

    def _receive(self) -> list[QueueMessage]:
        try:
            pages = self._queue.receive_messages(
                messages_per_page=self._options.batch_size, visibility_timeout=int(self._lease_seconds)).by_page()
            batch = list(next(pages, []))
        except ResourceNotFoundError:
            if not self._queue_missing:
                log.info("function '%s': queue '%s' does not exist; polling until it does (the host never creates "
                         "a trigger queue)", self._spec.name, self._queue.queue_name)
            self._queue_missing = True
            return []
        except AzureError as exc:
            log.warning("function '%s': polling queue '%s' failed (%s); retrying with back-off",
                        self._spec.name, self._queue.queue_name, exc)
            return []
        self._queue_missing = False
        return batch

    def _dispatch(self, message: QueueMessage) -> None:
        with self._capacity:
            self._in_flight += 1
        self._pool.submit(self._process, message)

    def _wait_for_new_batch_threshold(self) -> None:
        with self._capacity:
            self._capacity.wait_for(
                lambda: self._in_flight <= self._options.new_batch_threshold or self._stopping.is_set())

    def _process(self, message: QueueMessage) -> None:
        try:
            _MessageHandler(self._spec, self._invoker, self._options, self._queue, self._poison,
                            self._watchers).handle(message, self._lease_seconds, self._stopping)
        except Exception:
            log.exception("function '%s': processing message %s from queue '%s' failed",
                          self._spec.name, message.id, self._queue.queue_name)
        finally:
            with self._capacity:
                self._in_flight -= 1
                self._capacity.notify_all()


@dataclass
class _MessageHandler:
    """Runs the function for one message and then deletes, releases or poisons it."""

    spec: FunctionSpec
    invoker: Invoker
    options: QueueOptions
    queue: QueueClient
    poison: QueueClient | None
    watchers: _QueueWatchers

    def handle(self, message: QueueMessage, lease_seconds: float, stopping: threading.Event) -> None:
        if _dequeue_count(message) > self.options.max_dequeue_count:
            self._move_to_poison(message)
            return
        try:
            body = decode_body(message.content, self.options.message_encoding)
        except MessageDecodingError as exc:
            log.warning("function '%s': message %s on queue '%s' is %s (host.json messageEncoding is base64); "
                        "the Storage Queues extension moves it to the poison queue without running the function",
                        self.spec.name, message.id, self.queue.queue_name, exc)
            self._move_to_poison(message)
            return
        with _Lease(self.queue, message, lease_seconds, stopping):
            succeeded = self._invoke(message, body)
        self._complete(message, succeeded)

    def _invoke(self, message: QueueMessage, body: bytes) -> bool:
        reason = f"New queue message detected on '{self.queue.queue_name}'."
        try:
            returned = self.invoker.invoke(self.spec, _trigger_datum(self.spec.trigger, body),
                                           reason=reason, trigger_metadata=_trigger_metadata(message))
            deliver_return_value(self.invoker, self.spec, returned)
        except (FunctionFailedError, FunctionTimeoutError):
            return False
        except Exception:
            log.exception("function '%s': binding the invocation for message %s failed", self.spec.name, message.id)
            return False
        return True

    def _complete(self, message: QueueMessage, succeeded: bool) -> None:
        if succeeded:
            self._delete(message)
        elif self.poison is None:
            log.info("function '%s': queue '%s' has no poison queue; message %s stays invisible until its lease "
                     "lapses", self.spec.name, self.queue.queue_name, message.id)
        elif _dequeue_count(message) >= self.options.max_dequeue_count:
            self._move_to_poison(message)
        else:
            self._ignoring_gone(lambda: self.queue.update_message(
                message.id, message.pop_receipt, visibility_timeout=int(self.options.visibility_timeout)))

    def _move_to_poison(self, message: QueueMessage) -> None:
        if self.poison is None:
            return
        log.warning("Message has reached MaxDequeueCount of %d. Moving message to queue '%s'.",
                    self.options.max_dequeue_count, self.poison.queue_name)
        send_creating_queue(self.poison, message.content)
        self._delete(message)
        self.watchers.notify(self.poison.url)

    def _delete(self, message: QueueMessage) -> None:
        self._ignoring_gone(lambda: self.queue.delete_message(message.id, message.pop_receipt))

    def _ignoring_gone(self, operation: Callable[[], object]) -> None:
        """Run a delete or release; a message someone else took over, or that is gone, needs neither."""
        try:
            operation()
        except HttpResponseError as exc:
            if not _is_gone(exc):
                raise
            log.debug("queue '%s': message already gone or taken over (%s)", self.queue.queue_name, exc.reason)


class _Lease:
    """Keeps a message invisible while its function runs, renewing the visibility at half-time."""

    def __init__(self, queue: QueueClient, message: QueueMessage, seconds: float, stopping: threading.Event) -> None:
        self._queue = queue
        self._message = message
        self._seconds = seconds
        self._stopping = stopping
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._renew_until_done, name=f"lease-{message.id}", daemon=True)

    def __enter__(self) -> _Lease:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join()

    def _renew_until_done(self) -> None:
        while not self._done.wait(self._seconds / 2) and not self._stopping.is_set():
            try:
                receipt = self._queue.update_message(
                    self._message.id, self._message.pop_receipt, visibility_timeout=int(self._seconds))
            except HttpResponseError as exc:
                if _is_gone(exc):
                    return
                log.warning("renewing the lease of message %s failed (%s); retrying", self._message.id, exc)
                continue
            # Delete and release need the newest pop receipt; the handler reads it after __exit__ joins.
            self._message.pop_receipt = receipt.pop_receipt
            self._message.next_visible_on = receipt.next_visible_on


def _is_gone(exc: HttpResponseError) -> bool:
    return isinstance(exc, ResourceNotFoundError) or getattr(exc, "error_code", None) in _GONE_ERROR_CODES


def _dequeue_count(message: QueueMessage) -> int:
    return message.dequeue_count or 0


def _trigger_datum(binding: dict[str, Any], body: bytes) -> Datum:
    if str(binding.get("dataType", "")).lower() == "binary":
        return Datum(body, "bytes")
    return Datum(body.decode("utf-8", errors="replace"), "string")


def _trigger_metadata(message: QueueMessage) -> dict[str, Datum]:
    """Metadata as the host sends it: strings, an int, and DateTimeOffsets serialised as JSON strings."""
    return {
        "Id": Datum(message.id, "string"),
        "DequeueCount": Datum(message.dequeue_count, "int"),
        "InsertionTime": _json_time(message.inserted_on),
        "ExpirationTime": _json_time(message.expires_on),
        "NextVisibleTime": _json_time(message.next_visible_on),
        "PopReceipt": Datum(message.pop_receipt, "string"),
    }


def _json_time(moment: datetime | None) -> Datum:
    return Datum(json.dumps(moment.isoformat() if moment else None), "json")


def _output_bodies(datum: Datum) -> list[str | bytes]:
    """Messages in an encoded queue output: one str/bytes, or JSON of a QueueMessage ({id, body}) or a list."""
    if datum.type in ("string", "bytes"):
        return [datum.value]
    if datum.type != "json":
        raise ConfigError(f"a queue output of type '{datum.type}' is not supported")
    value = json.loads(datum.value)
    items = value if isinstance(value, list) else [value]
    return [item["body"] if isinstance(item, dict) else item for item in items]
