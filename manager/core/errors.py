"""The manager's errors: one base class, narrow subclasses carrying a status-code name.

Core code cannot import grpc, so each subclass names its status code as a plain
string; the gRPC adapter maps it to `grpc.StatusCode` at the edge.
"""

from __future__ import annotations

from enum import Enum


class MigrationFailure(Enum):
    """Why an agent's live migration failed (the wire's MigrationFailure): decisions such
    as the no-converge fallback read this, never the agent's sentence."""

    NOT_CONVERGED = "not_converged"
    DESTINATION_REFUSED = "destination_refused"
    PEER_GONE = "peer_gone"
    FENCED = "fenced"


class ManagerError(Exception):
    """Something the manager refuses or cannot do; the message is a human sentence."""

    code: str = "INTERNAL"
    # Set when the error is a live migration's failure as the source agent told it.
    migration_failure: MigrationFailure | None = None

    def __init__(self, message: str, migration_failure: MigrationFailure | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.migration_failure = migration_failure


class NotFoundError(ManagerError):
    code = "NOT_FOUND"


class AlreadyExistsError(ManagerError):
    code = "ALREADY_EXISTS"


class InvalidArgumentError(ManagerError):
    code = "INVALID_ARGUMENT"


class FailedPreconditionError(ManagerError):
    code = "FAILED_PRECONDITION"


class ResourceExhaustedError(ManagerError):
    code = "RESOURCE_EXHAUSTED"


class UnavailableError(ManagerError):
    code = "UNAVAILABLE"


class DeadlineExceededError(ManagerError):
    code = "DEADLINE_EXCEEDED"


class IllegalTransitionError(ManagerError):
    code = "FAILED_PRECONDITION"
