"""A port devhost needs is taken: one line that says which and what to do, at once, never a traceback or a
30 s wait; and `make run PORT=...` moves both the host and the JWKS URL the app checks dev tokens against.

The Azurite cases run on ports of their own (AZURITE_PORTS patched), so they never touch the standard
10000-10002 that other test sessions' Azurite may be using."""
from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from devhost import services
from devhost.services import Azurite, CannotStart
from tests.devhost.conftest import APPS, REPO, free_port

pytestmark = pytest.mark.devhost

MAKE_RUN_FILES = ["Makefile", "requirements.txt", "requirements-dev.txt", "local.settings.sample.json"]
# Stands in for the venv's python: shows what `make run` starts devhost with.
FAKE_PYTHON = '#!/bin/sh\necho "args: $*"\necho "jwks: ${TRAWL_AUTH_JWKS_URL-unset}"\n'


def make_run(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> list[str]:
    """`make run ARGS` on a copy of the repo's Makefile whose venv is installed and whose python is FAKE_PYTHON."""
    for name in MAKE_RUN_FILES:
        shutil.copy(REPO / name, tmp_path / name)
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True, exist_ok=True)
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    requirements = (tmp_path / "requirements.txt").read_bytes() + (tmp_path / "requirements-dev.txt").read_bytes()
    stamp = hashlib.sha1(requirements).hexdigest()[:12]  # the Makefile's sha1sum of them: not for security
    (tmp_path / ".venv" / f".installed-{stamp}").touch()
    done = subprocess.run(["make", "-s", "run", *args], cwd=tmp_path, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=60, check=True)
    return [line for line in done.stdout.splitlines() if line.startswith(("args:", "jwks:"))]


def test_make_run_on_another_port_serves_there_and_points_the_app_at_that_port_s_jwks(tmp_path: Path) -> None:
    assert make_run(tmp_path, "PORT=7072", env={"PORT": "3000"}) == [
        "args: -m devhost --script-root . --port 7072",
        "jwks: http://127.0.0.1:7072/.devhost/jwks",
    ]
    # On 7071 local.settings.json's URL stands, and a PORT in the environment is someone else's.
    assert make_run(tmp_path, env={"PORT": "3000"}) == ["args: -m devhost --script-root . --port 7071", "jwks: unset"]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 that another program listens on."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


def test_a_taken_http_port_is_one_line_that_says_how_to_choose_another(busy_port: int) -> None:
    env = {name: value for name, value in os.environ.items() if name != "AzureWebJobsStorage"}
    done = subprocess.run([sys.executable, "-m", "devhost", "--script-root", str(APPS / "http_app"),
                           "--port", str(busy_port)], cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
                          check=False)

    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output and len(output.splitlines()) == 1, output
    assert output.rstrip().endswith(
        f"devhost cannot start: port {busy_port} on 127.0.0.1 is already in use by another program; stop it, or "
        f"choose another port: make run PORT={busy_port + 1} (python -m devhost --port {busy_port + 1})"), output


class PortOwner:
    """An HTTP server on a free port that answers every request with `Server: <server>`."""

    def __init__(self, server: str) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(400)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def version_string(self) -> str:  # what send_response puts in the Server header
                return server

            def log_message(self, *args: Any) -> None:
                return None

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.httpd.server_address[1])
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def azurite_ports() -> Iterator[dict[str, PortOwner | None]]:
    """Azurite's three ports moved to free ones; the test puts a server on some of them."""
    owners: dict[str, PortOwner | None] = {"blob": None, "queue": None, "table": None}
    yield owners
    for owner in owners.values():
        if owner is not None:
            owner.close()


def occupy(monkeypatch: pytest.MonkeyPatch, owners: dict[str, PortOwner | None], **servers: str) -> None:
    """Put a server answering as `Server: <value>` on each named Azurite port; the others stay free."""
    for name in owners:
        owners[name] = PortOwner(servers[name]) if name in servers else None
    ports = {name: owner.port if owner else free_port() for name, owner in owners.items()}
    monkeypatch.setattr(services, "AZURITE_PORTS", ports)


def start_azurite(state_dir: Path) -> tuple[float, str]:
    """Start devhost's Azurite; (seconds it took to refuse, why). A start that succeeds fails the test."""
    started = time.monotonic()
    with pytest.raises(CannotStart) as refused:
        Azurite(state_dir).start()
    return time.monotonic() - started, str(refused.value)


def test_an_azurite_port_taken_by_another_program_is_said_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, azurite_ports: dict[str, PortOwner | None]) -> None:
    occupy(monkeypatch, azurite_ports, queue="nginx/1.27")
    queue_port = services.AZURITE_PORTS["queue"]

    seconds, reason = start_azurite(tmp_path)

    assert seconds < 5
    assert reason == (f"Azurite needs ports 10000-10002 on 127.0.0.1, but {queue_port} (queue) is taken by a program "
                      "that is not Azurite: stop what listens there, or run a whole Azurite (blob, queue and table) "
                      "there for devhost to use")


def test_an_azurite_on_only_some_of_its_ports_cannot_be_used_or_joined(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, azurite_ports: dict[str, PortOwner | None]) -> None:
    occupy(monkeypatch, azurite_ports, blob="Azurite-Blob/3.37.0", table="Apache")

    _, reason = start_azurite(tmp_path)

    ports = services.AZURITE_PORTS
    assert f"but {ports['blob']} (blob) is taken by an Azurite; {ports['table']} (table) is taken by a program " \
           "that is not Azurite: " in reason


def test_an_azurite_already_on_all_its_ports_is_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, azurite_ports: dict[str, PortOwner | None]) -> None:
    occupy(monkeypatch, azurite_ports, blob="Azurite-Blob/3.37.0", queue="Azurite-Queue/3.37.0",
           table="Azurite-Table/3.37.0")
    azurite = Azurite(tmp_path)

    azurite.start()

    assert azurite.process is None and not (tmp_path / "azurite").exists()  # nothing installed or started


def test_an_azurite_that_exits_as_it_starts_is_reported_at_once_with_the_reason_from_its_log(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, azurite_ports: dict[str, PortOwner | None]) -> None:
    occupy(monkeypatch, azurite_ports)
    (tmp_path / "azurite.log").write_text("an earlier run's last line\n")
    binary = tmp_path / "azurite" / "node_modules" / ".bin" / "azurite"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\necho 'Azurite Queue service is starting at http://127.0.0.1:10001'\n"
                      "echo 'Exit due to unhandled error: listen EADDRINUSE: address already in use 127.0.0.1:10001'\n"
                      "echo 'Azurite Blob service successfully closed'\nexit 1\n")
    binary.chmod(0o755)

    seconds, reason = start_azurite(tmp_path)

    assert seconds < 5
    assert reason == ("Azurite exited as it started: Exit due to unhandled error: listen EADDRINUSE: address already "
                      "in use 127.0.0.1:10001")
