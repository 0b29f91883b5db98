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
  runs (one renewal thread per listener for all its messages, where the extension runs a timer per message).
  The extension leases for 10 minutes; devhost's default of 60 s makes a message of a killed devhost come
  back within a minute instead of ten.
- Stopping: polling stops at once, and the host gives running invocations a grace period. The messages of
  those still running are then released (made visible again at once) instead of being left to their lease:
  the extension leaves them leased (QueueListener.StopAsync cancels its completion on a forced shutdown), but
  devhost is restarted far more often than an Azure instance, and a restarted devhost should not wait a
  minute for its own work.

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
from devhost.invoker import FunctionFailedError, FunctionTimeoutError, InvocationCancelledError, Invoker
from devhost.storage import QueueAccounts, queue_name

log = logging.getLogger("devhost")

LEASE_SECONDS = 60.0
POISON_SUFFIX = "-poison"
_MIN_POLLING_INTERVAL = 0.1
_THREAD_STOP_SECONDS = 2.0
_RENEWAL_RETRY_SECONDS = 1.0
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
        """Stop polling. Running invocations carry on: the host waits for them, then calls release_unfinished."""
        self._stopping.set()
        self._watchers.wake_all()
        for listener in self._listeners:
            listener.stop_polling()

    def release_unfinished(self) -> None:
        """Make the messages of invocations still running visible again at once, and stop renewing leases."""
        idle = [listener.release_unfinished() for listener in self._listeners]
        # A handler still running may be completing a message it took before the release.
        if all(idle):
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
        self._options = options
        self._queue = queue
        self._lease_seconds = lease_seconds
        self._stopping = stopping
        self._wake = watchers.register(queue.url)
        self._leases = _Leases(queue, lease_seconds, spec.name)
        self._handler = _MessageHandler(spec, invoker, options, queue, poison, watchers, self._leases)
        self._in_flight = 0
        self._capacity = threading.Condition()
        self._queue_missing = False
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=options.batch_size + options.new_batch_threshold, thread_name_prefix=f"queue-{spec.name}")
        self._thread = threading.Thread(target=self._poll, name=f"listener-{spec.name}", daemon=True)

    def start(self) -> None:
        log.debug("Storage queue listener started (function='%s', queue name='%s', storage account name='%s')",
                  self._spec.name, self._queue.queue_name, self._queue.account_name)
        self._leases.start()
        self._thread.start()

    def stop_polling(self) -> None:
        with self._capacity:
            self._capacity.notify_all()
        if self._thread.is_alive():
            self._thread.join(_THREAD_STOP_SECONDS)

    def release_unfinished(self) -> bool:
        """Release every message still leased and drop queued work; True if no handler runs any more."""
        released = self._leases.release_all()
        if released:
            log.info("function '%s': %d message(s) of unfinished invocations are visible again on queue '%s'",
                     self._spec.name, released, self._queue.queue_name)
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._capacity:
            return self._in_flight == 0

    def _poll(self) -> None:
        backoff = _Backoff(self._options.max_polling_interval)
        while not self._stopping.is_set():
            batch = self._receive()
            for message in batch:
                self._leases.add(message)
            if self._stopping.is_set():
                break  # release_unfinished makes this batch visible again
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
            self._handler.handle(message)
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
    leases: _Leases

    def handle(self, message: QueueMessage) -> None:
        if _dequeue_count(message) > self.options.max_dequeue_count:
            self._finish(message, self._move_to_poison)
            return
        try:
            body = decode_body(message.content, self.options.message_encoding)
        except MessageDecodingError as exc:
            log.warning("function '%s': message %s on queue '%s' is %s (host.json messageEncoding is base64); "
                        "the Storage Queues extension moves it to the poison queue without running the function",
                        self.spec.name, message.id, self.queue.queue_name, exc)
            self._finish(message, self._move_to_poison)
            return
        try:
            succeeded = self._invoke(message, body)
        except InvocationCancelledError:
            return  # the host is stopping; release_unfinished makes the message visible again
        self._finish(message, lambda held: self._complete(held, succeeded))

    def _finish(self, message: QueueMessage, complete: Callable[[QueueMessage], None]) -> None:
        """Complete a message this listener still holds; one released at stop is no longer its to complete."""
        if self.leases.take(message):
            complete(message)

    def _invoke(self, message: QueueMessage, body: bytes) -> bool:
        reason = f"New queue message detected on '{self.queue.queue_name}'."
        try:
            returned = self.invoker.invoke(self.spec, _trigger_datum(self.spec.trigger, body),
                                           reason=reason, trigger_metadata=_trigger_metadata(message))
            deliver_return_value(self.invoker, self.spec, returned)
        except InvocationCancelledError:
            raise
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


@dataclass
class _Held:
    """A leased message, its next renewal (time.monotonic()), and a lock its renewal and completion share."""

    message: QueueMessage
    renew_at: float
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Leases:
    """The messages one listener holds, kept invisible by one thread that renews each at half its lease."""

    def __init__(self, queue: QueueClient, seconds: float, name: str) -> None:
        self._queue = queue
        self._seconds = seconds
        self._held: dict[str, _Held] = {}
        self._changed = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._renew_until_closed, name=f"leases-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def add(self, message: QueueMessage) -> None:
        with self._changed:
            self._held[message.id] = _Held(message, time.monotonic() + self._seconds / 2)
            self._changed.notify()

    def take(self, message: QueueMessage) -> bool:
        """Stop renewing `message` so its handler can complete it; False if it was released at stop."""
        with self._changed:
            held = self._held.pop(message.id, None)
        if held is None:
            return False
        with held.lock:  # a renewal in progress finishes first: completing needs its new pop receipt
            return True

    def release_all(self) -> int:
        """Make every held message visible again at once and stop renewing; return how many there were."""
        with self._changed:
            held, self._held = list(self._held.values()), {}
            self._closed = True
            self._changed.notify()
        for entry in held:
            with entry.lock:
                self._update(entry, visibility_timeout=0)
        if self._thread.is_alive():
            self._thread.join(_THREAD_STOP_SECONDS)
        return len(held)

    def _renew_until_closed(self) -> None:
        while due := self._next_due():
            for entry in due:
                self._renew(entry)

    def _next_due(self) -> list[_Held]:
        """Wait until some lease is due for renewal and return those that are; [] once closed."""
        with self._changed:
            while not self._closed:
                now = time.monotonic()
                due = [entry for entry in self._held.values() if entry.renew_at <= now]
                if due:
                    return due
                soonest = min((entry.renew_at for entry in self._held.values()), default=None)
                self._changed.wait(None if soonest is None else soonest - now)
            return []

    def _renew(self, entry: _Held) -> None:
        with entry.lock:
            with self._changed:
                if self._held.get(entry.message.id) is not entry:
                    return  # taken by its handler or released meanwhile
            renewed = self._update(entry, visibility_timeout=int(self._seconds))
            entry.renew_at = time.monotonic() + (self._seconds / 2 if renewed else _RENEWAL_RETRY_SECONDS)

    def _update(self, entry: _Held, visibility_timeout: int) -> bool:
        """Set the message's visibility and keep its new pop receipt; False (logged) if that failed, other than
        because the message is gone (taken over by another listener), which leaves nothing to renew."""
        message = entry.message
        try:
            receipt = self._queue.update_message(message.id, message.pop_receipt, visibility_timeout=visibility_timeout)
        except AzureError as exc:
            if isinstance(exc, HttpResponseError) and _is_gone(exc):
                with self._changed:
                    self._held.pop(message.id, None)
                return True
            log.warning("updating the visibility of message %s on queue '%s' failed (%s)",
                        message.id, self._queue.queue_name, exc)
            return False
        message.pop_receipt = receipt.pop_receipt
        message.next_visible_on = receipt.next_visible_on
        return True


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
