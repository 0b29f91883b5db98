"""Sample app for devhost's queue fidelity tests.

Every function appends what it received, as one JSON line, to the file named by the QUEUE_APP_RECORD
setting, so tests can count attempts and check what the host passed. Queue names come from settings
(%ITEMS_QUEUE% ...), so each test uses its own queues.
"""
import datetime
import json
import os
import time

import azure.functions as func

app = func.FunctionApp()


def record(function: str, msg: func.QueueMessage) -> str:
    """Append the message as this function saw it; return its body."""
    body = msg.get_body().decode("utf-8")
    line = {
        "function": function,
        "body": body,
        "id": msg.id,
        "dequeue_count": msg.dequeue_count,
        "pop_receipt": msg.pop_receipt,
        "insertion_time": _iso(msg.insertion_time),
        "expiration_time": _iso(msg.expiration_time),
        "next_visible_time": _iso(msg.time_next_visible),
        "started": time.time(),
    }
    with open(os.environ["QUEUE_APP_RECORD"], "a", encoding="utf-8") as file:
        file.write(json.dumps(line) + "\n")
    return body


def _iso(moment: datetime.datetime | None) -> str | None:
    return moment.isoformat() if moment else None


@app.queue_trigger(arg_name="msg", queue_name="%ITEMS_QUEUE%", connection="AzureWebJobsStorage")
def process_item(msg: func.QueueMessage) -> None:
    """Succeeds, unless the body starts with "fail"; "sleep:<seconds>" runs that long first."""
    body = record("process_item", msg)
    if body.startswith("sleep:"):
        time.sleep(float(body.removeprefix("sleep:")))
    if body.startswith("fail"):
        raise RuntimeError(f"failing on purpose: {body}")


@app.queue_trigger(arg_name="msg", queue_name="%RELAY_QUEUE%", connection="AzureWebJobsStorage")
@app.queue_output(arg_name="copies", queue_name="%OUT_QUEUE%", connection="AzureWebJobsStorage")
@app.queue_output(arg_name="$return", queue_name="%OUT_QUEUE%", connection="AzureWebJobsStorage")
def relay(msg: func.QueueMessage, copies: func.Out[list[str]]) -> str:
    """Writes two copies through an output parameter and one through the return value."""
    body = record("relay", msg)
    copies.set([f"{body}-a", f"{body}-b"])
    return f"relayed:{body}"


@app.queue_trigger(arg_name="msg", queue_name="%DOOMED_QUEUE%", connection="AzureWebJobsStorage")
def reject_all(msg: func.QueueMessage) -> None:
    """Fails every time, so each message ends in the poison queue."""
    body = record("reject_all", msg)
    raise RuntimeError(f"rejecting {body}")


@app.queue_trigger(arg_name="msg", queue_name="%DOOMED_QUEUE%-poison", connection="AzureWebJobsStorage")
def handle_poison(msg: func.QueueMessage) -> None:
    """Runs for messages poisoned on the doomed queue."""
    record("handle_poison", msg)
