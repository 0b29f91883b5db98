"""Sample app for devhost's timer fidelity tests.

Each run appends the TimerRequest it received, as one JSON line, to the file named by the TIMER_APP_RECORD
setting. The tick schedule comes from the TICK_SCHEDULE setting so each test picks its own.
"""
import json
import os
import time

import azure.functions as func

app = func.FunctionApp()


def record(function: str, timer: func.TimerRequest) -> None:
    """Append what the host passed for this run."""
    line = {
        "function": function,
        "past_due": timer.past_due,
        "schedule": timer.schedule,
        "schedule_status": timer.schedule_status,
        "started": time.time(),
    }
    with open(os.environ["TIMER_APP_RECORD"], "a", encoding="utf-8") as file:
        file.write(json.dumps(line) + "\n")


@app.timer_trigger(arg_name="timer", schedule="%TICK_SCHEDULE%")
def tick(timer: func.TimerRequest) -> None:
    """Runs on the schedule the test chose, for TICK_SECONDS seconds (default 0)."""
    record("tick", timer)
    time.sleep(float(os.environ.get("TICK_SECONDS", "0")))


@app.timer_trigger(arg_name="timer", schedule="0 0 0 1 1 *", run_on_startup=True)
def at_startup(timer: func.TimerRequest) -> None:
    """Runs once a year, and once when the host starts."""
    record("at_startup", timer)
