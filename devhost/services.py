"""Embedded Azurite and PostgreSQL, started only when the app's settings point at nothing running."""
from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("devhost")

AZURITE_VERSION = "3.37.0"
AZURITE_PORTS = {"blob": 10000, "queue": 10001, "table": 10002}
DEV_STORAGE = "UseDevelopmentStorage=true"


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


@dataclass
class Azurite:
    """Azurite from npm, installed on first use into `<state>/azurite`, with its data on disk."""

    state_dir: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if all(port_open(p) for p in AZURITE_PORTS.values()):
            log.info("Azurite is already listening on 10000-10002; using it")
            return
        binary = self._install()
        data = self.state_dir / "azurite-data"
        data.mkdir(parents=True, exist_ok=True)
        log_file = (self.state_dir / "azurite.log").open("ab")
        # Without --disableTelemetry Azurite takes 30-40 s to stop on a machine with no internet access.
        self.process = subprocess.Popen(
            [str(binary), "--silent", "--skipApiVersionCheck", "--loose", "--disableTelemetry", "--location", str(data),
             "--blobHost", "127.0.0.1", "--queueHost", "127.0.0.1", "--tableHost", "127.0.0.1"],
            stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )
        _wait_for(lambda: all(port_open(p) for p in AZURITE_PORTS.values()), 30, "Azurite")
        log.info("Azurite started (data in %s)", data)

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
    _server: object | None = None

    def start(self) -> None:
        import pgserver  # dev-only dependency: imported here so production never needs it

        data = self.state_dir / "pgdata"
        data.mkdir(parents=True, exist_ok=True)
        self._server = pgserver.get_server(data, cleanup_mode="stop")
        self.uri = self._server.get_uri()  # type: ignore[attr-defined]
        log.info("embedded PostgreSQL started (data in %s)", data)

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()  # type: ignore[attr-defined]
            self._server = None


def _wait_for(ready: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start within {seconds:.0f}s")
        time.sleep(0.2)
