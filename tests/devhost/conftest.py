"""Fixtures for devhost fidelity tests: real Azurite, and devhost processes running sample apps."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
APPS = Path(__file__).resolve().parent / "apps"
# devhost promises to exit within 10 s of SIGTERM, whatever its functions are doing.
STOP_SECONDS = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class DevhostProcess:
    process: subprocess.Popen[str]
    base_url: str
    log_path: Path

    def logs(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> int:
        """SIGTERM the host and return its exit code; fail the test if it had to be SIGKILLed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                pytest.fail(f"devhost did not exit within {STOP_SECONDS:.0f} s of SIGTERM and was killed; "
                            f"its log ends:\n{self.logs()[-4000:]}")
        return self.process.returncode


def start_devhost(app_dir: Path, log_path: Path, env: dict[str, str] | None = None,
                  port: int | None = None, wait: bool = True) -> DevhostProcess:
    """Start `python -m devhost` on a sample app and wait until its HTTP endpoint answers."""
    port = port or free_port()
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), full_env.get("PYTHONPATH")]))
    log_file = log_path.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "devhost", "--script-root", str(app_dir), "--port", str(port)],
        cwd=REPO, env=full_env, stdout=log_file, stderr=subprocess.STDOUT, text=True,
    )
    host = DevhostProcess(process, f"http://127.0.0.1:{port}", log_path)
    if wait:
        wait_until_serving(host)
    return host


def wait_until(condition: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Poll `condition` until it returns something truthy (and return that), or fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"condition not met within {timeout}s")


def wait_until_serving(host: DevhostProcess, seconds: float = 60) -> None:
    """Wait for the host's status endpoint, which may accept connections before it answers them."""

    def serving() -> bool:
        if host.process.poll() is not None:
            raise RuntimeError(f"devhost exited with {host.process.returncode}:\n{host.logs()}")
        try:
            return requests.get(f"{host.base_url}/admin/host/status", timeout=1).status_code == 200
        except requests.RequestException:  # not listening yet, or bound but not serving yet
            return False

    try:
        wait_until(serving, seconds)
    except AssertionError:
        host.stop()
        raise RuntimeError(f"devhost did not become ready in {seconds}s:\n{host.logs()}") from None


@pytest.fixture
def devhost(tmp_path: Path, azurite: str) -> Iterator[Callable[..., DevhostProcess]]:
    """Factory: devhost(app_name_or_dir, env=...) starts a host; all are stopped after the test."""
    started: list[DevhostProcess] = []

    def factory(app: str | Path, env: dict[str, str] | None = None, **kwargs: object) -> DevhostProcess:
        app_dir = app if isinstance(app, Path) else APPS / app
        host = start_devhost(app_dir, tmp_path / f"devhost-{len(started)}.log", env, **kwargs)  # type: ignore[arg-type]
        started.append(host)
        return host

    yield factory
    unstoppable = []
    for host in started:
        try:
            host.stop()
        except pytest.fail.Exception as exc:  # stop the others before failing
            unstoppable.append(str(exc))
    if unstoppable:
        pytest.fail("\n".join(unstoppable))
