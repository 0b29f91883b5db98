"""The CLI's errors, each carrying the exit code it ends the process with and a one-line message."""
from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_JOB_UNSUCCESSFUL = 1
EXIT_USAGE = 2
EXIT_API = 3
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """An error the user sees as `trawl: <message>` on stderr; ends the process with `exit_code`."""

    exit_code = EXIT_API


class UsageError(CliError):
    """The command line (or the environment it reads) cannot be used as given."""

    exit_code = EXIT_USAGE


class NetworkError(CliError):
    """The API could not be reached, or did not answer in time."""


class CredentialError(CliError):
    """No access token could be obtained for the API."""


class ApiError(CliError):
    """The API answered with an error status; `problem` holds its RFC 9457 body (or a stand-in)."""

    def __init__(self, status: int, title: str, detail: str, problem: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {title}: {detail}" if detail else f"{status} {title}")
        self.status = status
        self.title = title
        self.detail = detail
        self.problem = problem or {}

    @property
    def type(self) -> str | None:
        """The problem type URI, e.g. `https://trawl.dev/problems/not-found`."""
        value = self.problem.get("type")
        return value if isinstance(value, str) else None


class NoEventStream(ApiError):
    """The API answered that it has no job event stream (an older server, or a gateway that does not route it)."""


class UnexpectedResponse(CliError):
    """The API answered with a success status but a body this client cannot read."""


class JobUnsuccessful(CliError):
    """A followed job ended failed, cancelled or timed out."""

    exit_code = EXIT_JOB_UNSUCCESSFUL


class Interrupted(CliError):
    """The user pressed Ctrl-C; the job itself goes on."""

    exit_code = EXIT_INTERRUPTED
