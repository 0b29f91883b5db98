"""Embedded Azurite and PostgreSQL, started only when the app's settings point at nothing running, and the
check that a port devhost needs is free."""
from __future__ import annotations

import errno
import http.client
import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pgserver.postgres_server import PostgresServer

log = logging.getLogger("devhost")

AZURITE_VERSION = "3.37.0"
AZURITE_PORTS = {"blob": 10000, "queue": 10001, "table": 10002}
DEV_STORAGE = "UseDevelopmentStorage=true"


class CannotStart(Exception):
    """devhost cannot start for a reason outside it (a port in use, Azurite exiting); the message says what to do."""


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def ensure_port_free(port: int, remedy: str) -> None:
    """CannotStart, ending with `remedy`, when 127.0.0.1:`port` cannot be listened on because it is in use.

    Binds as the HTTP server will (SO_REUSEADDR, so a port in TIME_WAIT counts as free), before any service
    starts: a taken port is reported in a line, not as a traceback after Azurite and PostgreSQL have started.
    """
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise CannotStart(f"port {port} on 127.0.0.1 is already in use by another program; {remedy}") from None


def serves_azurite(port: int) -> bool:
    """True when 127.0.0.1:`port` answers HTTP as Azurite does (`Server: Azurite-Blob/3.x`)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        connection.request("GET", "/")
        return (connection.getresponse().getheader("Server") or "").startswith("Azurite-")
    except (OSError, http.client.HTTPException):  # not HTTP at all: not Azurite
        return False
    finally:
        connection.close()


@dataclass
class Azurite:
    """Azurite from npm, installed on first use into `<state>/azurite`, with its data on disk."""

    state_dir: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self._running_already():
            log.info("Azurite is already listening on 10000-10002; using it")
            return
        binary = self._install()
        data = self.state_dir / "azurite-data"
        data.mkdir(parents=True, exist_ok=True)
        log_path = self.state_dir / "azurite.log"
        log_file = log_path.open("ab")
        written_from = log_file.tell()
        # Without --disableTelemetry Azurite takes 30-40 s to stop on a machine with no internet access.
        self.process = subprocess.Popen(
            [str(binary), "--silent", "--skipApiVersionCheck", "--loose", "--disableTelemetry", "--location", str(data),
             "--blobHost", "127.0.0.1", "--queueHost", "127.0.0.1", "--tableHost", "127.0.0.1"],
            stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )
        _wait_until_listening(self.process, log_path, written_from)
        log.info("Azurite started (data in %s)", data)

    def _running_already(self) -> bool:
        """True when an Azurite answers on all of 10000-10002; CannotStart when only some of them are taken,
        or any by another program, since an Azurite of devhost's own could not listen there."""
        taken = {name: port for name, port in AZURITE_PORTS.items() if port_open(port)}
        theirs = {name for name, port in taken.items() if not serves_azurite(port)}
        if taken and (theirs or len(taken) < len(AZURITE_PORTS)):
            raise CannotStart(_azurite_ports_taken(taken, theirs))
        return bool(taken)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.process = None

    def _install(self) -> Path:
        prefix = self.state_dir / "azurite"
        binary = prefix / "node_modules" / ".bin" / "azurite"
        if not binary.exists():
            if shutil.which("npm") is None:
                raise RuntimeError("Azurite is needed but npm is not installed (install Node.js 18+)")
            log.info("installing Azurite %s from npm into %s (first run only)", AZURITE_VERSION, prefix)
            prefix.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                ["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--loglevel=error",
                 f"azurite@{AZURITE_VERSION}"],
                check=True,
            )
        return binary


@dataclass
class Postgres:
    """PostgreSQL from the `pgserver` wheel, data in `<state>/pgdata`; a second start reuses it."""

    state_dir: Path
    uri: str = ""
    _server: PostgresServer | None = None

    def start(self) -> None:
        # dev-only dependency: imported here so production never needs it
        from pgserver.postgres_server import get_server

        data = self.state_dir / "pgdata"
        data.mkdir(parents=True, exist_ok=True)
        self._server = get_server(data, cleanup_mode="stop")
        self.uri = self._server.get_uri()
        log.info("embedded PostgreSQL started (data in %s)", data)

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


def _wait_until_listening(process: subprocess.Popen[bytes], log_path: Path, written_from: int) -> None:
    """Return once Azurite listens; CannotStart at once, with the reason from its log, if it exits."""
    _wait_for(lambda: process.poll() is not None or all(port_open(p) for p in AZURITE_PORTS.values()), 30, "Azurite")
    if process.poll() is not None:
        raise CannotStart(f"Azurite exited as it started: {_exit_reason(log_path, written_from)}")


def _azurite_ports_taken(taken: dict[str, int], theirs: set[str]) -> str:
    held = "; ".join(f"{port} ({name}) is taken by {'a program that is not' if name in theirs else 'an'} Azurite"
                     for name, port in taken.items())
    return (f"Azurite needs ports 10000-10002 on 127.0.0.1, but {held}: stop what listens there, or run a whole "
            "Azurite (blob, queue and table) there for devhost to use")


def _exit_reason(log_path: Path, written_from: int) -> str:
    """The error line this run wrote to Azurite's log (`... listen EADDRINUSE: address already in use
    127.0.0.1:10001`), else its last line."""
    with log_path.open("rb") as log_file:
        log_file.seek(written_from)
        lines = log_file.read().decode(errors="replace").strip().splitlines()
    errors = [line for line in lines if "error" in line.lower()]
    if errors:
        return errors[0]
    return lines[-1] if lines else f"nothing in {log_path}"


def _wait_for(ready: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start within {seconds:.0f}s")
        time.sleep(0.2)
