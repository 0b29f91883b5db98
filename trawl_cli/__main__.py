"""`trawl [global options] COMMAND ...` (or `python -m trawl_cli`): parse the command line, run one command,
and end with its exit code: 0 done, 1 a followed job ended failed/cancelled/timed_out or with no URL
succeeded, 2 usage, 3 API or network error, 130 interrupted. Every failure is one `trawl: ...` line on
stderr, never a traceback."""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn
from urllib.parse import urlsplit

from trawl_cli import __version__, jobs, logs, pages, results
from trawl_cli.auth import CredentialOptions, resolve_token
from trawl_cli.client import TrawlClient, one_line
from trawl_cli.errors import EXIT_INTERRUPTED, CliError, UsageError
from trawl_cli.render import OutputMode, Terminal

DEFAULT_API_URL = "http://127.0.0.1:7071"


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are UsageErrors (one line, exit 2) rather than usage text and exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def build_parser() -> Parser:
    """The `trawl` parser; the global options are accepted before or after the command."""
    common = Parser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument("--api-url", metavar="URL",
                        help=f"the API's origin (env TRAWL_API_URL, default {DEFAULT_API_URL})")
    common.add_argument("--token", metavar="TOKEN", help="a bearer token (prefer env TRAWL_TOKEN: flags show in ps)")
    common.add_argument("--dev-user", metavar="NAME", help="mint a devhost dev token for NAME (local devhost only)")
    common.add_argument("--scope", metavar="SCOPE",
                        help="get an Entra ID token for SCOPE, e.g. api://trawl/.default (env TRAWL_API_SCOPE)")
    common.add_argument("--verbose", "-v", action="store_true",
                        help="print each HTTP call and idempotency key on stderr")
    common.add_argument("--json", action="store_true",
                        help="print JSON: one document, or one line per entry (NDJSON) when following a job or a log")
    common.add_argument("--quiet", "-q", action="store_true",
                        help="print only what a script goes on with: a new job's id, a status, the data asked for")
    parser = Parser(prog="trawl", parents=[common], description="Submit and follow Trawl scraping jobs.",
                    epilog="Exit codes: 0 done (a job completed_with_errors included, if some URL succeeded); 1 a job "
                           "followed with --wait or watch ended failed, cancelled or timed_out, or with no URL "
                           "succeeded; 2 usage; 3 API or network error; 130 interrupted.")
    parser.add_argument("--version", action="version", version=f"trawl {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (jobs, results, logs, pages):
        module.register(commands, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        terminal = Terminal(mode=_output_mode(args))
        return int(args.run(args, _client(args), terminal))
    except CliError as exc:
        return _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:  # stdout closed early (`trawl list | head`): nothing left to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _output_mode(args: argparse.Namespace) -> OutputMode:
    json_output, quiet = getattr(args, "json", False), getattr(args, "quiet", False)
    if json_output and quiet:
        raise UsageError("--json and --quiet cannot be used together")
    return OutputMode.JSON if json_output else OutputMode.QUIET if quiet else OutputMode.TEXT


def _client(args: argparse.Namespace) -> TrawlClient:
    api_url = (getattr(args, "api_url", None) or os.environ.get("TRAWL_API_URL") or DEFAULT_API_URL).rstrip("/")
    parts = urlsplit(api_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--api-url must be an http(s) URL such as {DEFAULT_API_URL}, not {api_url!r}")
    credentials = CredentialOptions(getattr(args, "token", None), getattr(args, "dev_user", None),
                                    getattr(args, "scope", None))
    token = resolve_token(credentials, api_url, os.environ)
    trace = _trace if getattr(args, "verbose", False) else None
    return TrawlClient(api_url, token, on_request=trace)


def _trace(line: str) -> None:
    sys.stderr.write(f"trawl: {line}\n")


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"trawl: {one_line(message)}\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
