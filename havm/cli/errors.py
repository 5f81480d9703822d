"""Errors of the `havm` command line.

Every failure a user can cause or meet (a manager that does not answer, a VM that does
not exist, a job that failed) is one of these. The entry point prints the message as a
single `error: ...` line and exits 1, so no user ever sees a traceback for them.
"""

from __future__ import annotations


class CliError(Exception):
    """Base of every error the command line reports as one sentence."""

    code = "UNKNOWN"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ManagerCallError(CliError):
    """The manager refused a call; the message is the manager's own sentence."""


class NotFound(ManagerCallError):
    code = "NOT_FOUND"


class AlreadyExists(ManagerCallError):
    code = "ALREADY_EXISTS"


class InvalidArgument(ManagerCallError):
    code = "INVALID_ARGUMENT"


class FailedPrecondition(ManagerCallError):
    code = "FAILED_PRECONDITION"


class ResourceExhausted(ManagerCallError):
    code = "RESOURCE_EXHAUSTED"


class PermissionDenied(ManagerCallError):
    """The caller's identity may not make this call; the sentence names the role needed."""

    code = "PERMISSION_DENIED"


class HostUnavailable(ManagerCallError):
    """The manager answered, but a host it needed did not."""

    code = "UNAVAILABLE"


class ManagerUnreachable(CliError):
    """No manager answers at the address the command line was given."""

    code = "UNAVAILABLE"
    # The connection to the manager broke under a call (rather than never being made).
    connection_broke = False


class ManagerTimeout(CliError):
    """The manager did not answer within the call timeout."""

    code = "DEADLINE_EXCEEDED"


class JobFailed(CliError):
    """A job the command waited for ended failed; the message is the job's error."""

    code = "FAILED"


class MigrationFailed(CliError):
    """A migration the command followed ended failed; the message is the migration's error."""

    code = "FAILED"
