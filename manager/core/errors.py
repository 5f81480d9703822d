"""The manager's errors: one base class, narrow subclasses carrying a status-code name.

Core code cannot import grpc, so each subclass names its status code as a plain
string; the gRPC adapter maps it to `grpc.StatusCode` at the edge.
"""

from __future__ import annotations


class ManagerError(Exception):
    """Something the manager refuses or cannot do; the message is a human sentence."""

    code: str = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


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
