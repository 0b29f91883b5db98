"""`python -m devhost [--script-root DIR] [--port 7071]`: run a Functions app folder locally, like `func start`.

`python -m devhost token --user NAME [--roles ...]` prints a token of the local dev issuer (devhost/devauth.py).
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from devhost import devauth
from devhost.config import ConfigError
from devhost.host import Host, HostOptions


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
    host = Host(_parse(argv))
    signal.signal(signal.SIGTERM, lambda *_: host.stopped.set())
    signal.signal(signal.SIGINT, lambda *_: host.stopped.set())
    try:
        host.start()
    except ConfigError as exc:
        logging.getLogger("devhost").error("devhost cannot start: %s", exc)
        host.stop()
        return 1
    except BaseException:
        host.stop()
        raise
    host.stopped.wait()
    logging.getLogger("devhost").info("devhost is stopping")
    host.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
