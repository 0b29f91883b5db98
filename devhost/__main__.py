"""`python -m devhost [--script-root DIR] [--port 7071]`: run a Functions app folder locally, like `func start`.

`python -m devhost token --user NAME [--roles ...]` prints a token of the local dev issuer (devhost/devauth.py).
"""
from __future__ import annotations

import argparse
import atexit
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import NoReturn

from devhost import devauth
from devhost.config import ConfigError
from devhost.host import Host, HostOptions
from devhost.services import CannotStart, ensure_port_free

log = logging.getLogger("devhost")

# From SIGTERM or Ctrl-C to exit, whatever is still running: within the 10 s that process managers (and
# the test harness) give before SIGKILL.
STOP_SECONDS = 9.0
# How often the main thread looks for a stop request (signals, or a lost task hub lock).
STOP_POLL_SECONDS = 0.1


def _parse(argv: list[str]) -> HostOptions:
    parser = argparse.ArgumentParser(prog="python -m devhost", description=__doc__)
    parser.add_argument("--script-root", type=Path, default=Path.cwd(), help="the app folder (default: current folder)")
    parser.add_argument("--port", type=int, default=7071, help="HTTP port on 127.0.0.1 (default 7071)")
    parser.add_argument("--postgres-setting", default="TRAWL_DATABASE_URL",
                        help="app setting that, when present but empty, gets an embedded PostgreSQL URL")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="where Azurite and PostgreSQL keep data (default: <script-root>/.devhost)")
    args = parser.parse_args(argv)
    return HostOptions(args.script_root, args.port, args.postgres_setting, args.state_dir)


def main(argv: list[str]) -> int:
    if argv[:1] == ["token"]:
        return devauth.main(argv[1:])
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", stream=sys.stdout)
    # The Azure SDKs log every HTTP request at INFO; the host log is about functions.
    logging.getLogger("azure").setLevel(logging.WARNING)
    options = _parse(argv)
    host = Host(options)
    requested: list[int] = []
    # The handlers only append: Event.set() takes the event's lock, which the main thread may hold inside
    # Event.wait() at the moment the signal arrives, and the handler runs on that same thread (a deadlock).
    signal.signal(signal.SIGTERM, lambda signum, _: requested.append(signum))
    signal.signal(signal.SIGINT, lambda signum, _: requested.append(signum))
    try:
        ensure_port_free(options.port, f"stop it, or choose another port: make run PORT={options.port + 1} "
                                       f"(python -m devhost --port {options.port + 1})")
        host.start()
    except (ConfigError, CannotStart) as exc:
        log.error("devhost cannot start: %s", exc)
        host.stop()
        return 1
    except BaseException:
        host.stop()
        raise
    while not (requested or host.stopped.is_set()):
        time.sleep(STOP_POLL_SECONDS)
    log.info("devhost is stopping")
    _exit_within(STOP_SECONDS)
    if not host.stop():
        log.warning("devhost: a sync function is still running and cannot be interrupted; exiting without it, "
                    "as the Functions host ends its worker process")
    _exit_without_joining_threads()


def _exit_within(seconds: float) -> None:
    """Exit `seconds` from now at the latest, even if stopping, or an exit handler, hangs."""

    def overdue() -> None:
        log.error("devhost did not exit within %.0f s of the stop request; exiting now", seconds)
        _flush_and_exit(1)

    timer = threading.Timer(seconds, overdue)
    timer.daemon = True
    timer.start()


def _exit_without_joining_threads() -> NoReturn:
    """Run the exit handlers (the app's telemetry flush, logging's), then exit without joining threads.

    A normal exit joins every non-daemon thread first, and threads devhost cannot stop are non-daemon: the
    sync pool's, and those of the app's own ThreadPoolExecutors, whose work a cancelled async function
    leaves running. One blocked thread would keep devhost alive for as long as it blocks; on Azure the
    host ends the worker process instead. Everything devhost owns is stopped by now.
    """
    atexit._run_exitfuncs()
    _flush_and_exit(0)


def _flush_and_exit(code: int) -> NoReturn:
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
