"""Sample app for devhost's worker-parity and shutdown tests.

HTTP: `hold` (sync) blocks its pool thread until `release`; `wait` (async) awaits a module-level
asyncio.Event until `notify` sets it; `state` and `where` (async) report which threads and loop run what.
Queues: `hold_message` (sync, on %HOLD_QUEUE%) and `await_message` (async, on %AWAIT_QUEUE%) never finish
on their own, so a test can stop devhost with them in flight. Queue functions append what happened, as
one JSON line, to the file named by the WORKER_APP_RECORD setting.
"""
import asyncio
import json
import os
import threading

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

_released = threading.Event()
_holding: list[str] = []  # the threads running `hold` now
_waiting: list[int] = []  # id() of the loop of each `wait` awaiting the event now
_lock = threading.Lock()
# Bound to the first loop that waits on it: waiting or setting it from another loop raises RuntimeError.
_notified = asyncio.Event()


def _json(payload: object) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(payload), mimetype="application/json")


def _record(event: str, msg: func.QueueMessage) -> None:
    line = {"event": event, "body": msg.get_body().decode(), "id": msg.id}
    with _lock, open(os.environ["WORKER_APP_RECORD"], "a", encoding="utf-8") as file:
        file.write(json.dumps(line) + "\n")


@app.route(route="hold", methods=["GET"])
def hold(req: func.HttpRequest) -> func.HttpResponse:
    name = threading.current_thread().name
    with _lock:
        _holding.append(name)
    try:
        _released.wait()
    finally:
        with _lock:
            _holding.remove(name)
    return func.HttpResponse(name)


@app.route(route="release", methods=["POST"])
async def release(req: func.HttpRequest) -> func.HttpResponse:
    _released.set()
    return func.HttpResponse(status_code=204)


@app.route(route="state", methods=["GET"])
async def state(req: func.HttpRequest) -> func.HttpResponse:
    """The threads holding, every live thread of the pool they belong to, and how many `wait` calls wait."""
    with _lock:
        holding, waiting = list(_holding), len(_waiting)
    pools = {name.rsplit("_", 1)[0] + "_" for name in holding}
    pool = [t.name for t in threading.enumerate() if any(t.name.startswith(prefix) for prefix in pools)]
    return _json({"holding": holding, "pool": pool, "waiting": waiting})


@app.route(route="where", methods=["GET"])
async def where(req: func.HttpRequest) -> func.HttpResponse:
    """The loop and thread this runs on, and the thread asyncio.to_thread hands work to."""
    offloaded = await asyncio.to_thread(lambda: threading.current_thread().name)
    return _json({"loop": id(asyncio.get_running_loop()), "thread": threading.current_thread().name,
                  "to_thread": offloaded})


@app.route(route="wait", methods=["GET"])
async def wait(req: func.HttpRequest) -> func.HttpResponse:
    loop = id(asyncio.get_running_loop())
    with _lock:
        _waiting.append(loop)
    await _notified.wait()
    return _json({"loop": loop})


@app.route(route="notify", methods=["POST"])
async def notify(req: func.HttpRequest) -> func.HttpResponse:
    _notified.set()
    return _json({"loop": id(asyncio.get_running_loop())})


@app.queue_trigger(arg_name="msg", queue_name="%HOLD_QUEUE%", connection="AzureWebJobsStorage")
def hold_message(msg: func.QueueMessage) -> None:
    """Blocks its thread for good: only the end of the process ends it."""
    _record("hold_message started", msg)
    threading.Event().wait()


@app.queue_trigger(arg_name="msg", queue_name="%AWAIT_QUEUE%", connection="AzureWebJobsStorage")
async def await_message(msg: func.QueueMessage) -> None:
    """Awaits for good, until devhost cancels it."""
    _record("await_message started", msg)
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        _record("await_message cancelled", msg)
        raise
