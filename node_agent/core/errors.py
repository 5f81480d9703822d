"""Errors the node agent reports to its callers.

One base class carries a human sentence; each subclass names the status code the
gRPC adapter maps it to, so the core never needs to know about gRPC.
"""

from __future__ import annotations

import enum


class MigrationFailure(enum.Enum):
    """Why a live migration failed, for callers that decide on it (not on the sentence)."""

    NOT_CONVERGED = "not_converged"
    DESTINATION_REFUSED = "destination_refused"
    PEER_GONE = "peer_gone"
    FENCED = "fenced"


class AgentError(Exception):
    """Something the caller asked for cannot be done; the message says why."""

    code = "INTERNAL"
    # Set on the failure of a live migration: what kind of failure it was.
    migration_failure: MigrationFailure | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def because(self, failure: MigrationFailure | None) -> AgentError:
        """This error, tagged with the kind of migration failure it is; returns self."""
        self.migration_failure = failure
        return self


class InvalidArgument(AgentError):
    code = "INVALID_ARGUMENT"


class PermissionDenied(AgentError):
    code = "PERMISSION_DENIED"


class NotFound(AgentError):
    code = "NOT_FOUND"


class AlreadyExists(AgentError):
    code = "ALREADY_EXISTS"


class FailedPrecondition(AgentError):
    code = "FAILED_PRECONDITION"


class ResourceExhausted(AgentError):
    code = "RESOURCE_EXHAUSTED"


class Unavailable(AgentError):
    """Another host (a migration's peer) cannot be reached or went away."""

    code = "UNAVAILABLE"


class Corrupted(AgentError):
    """Bytes received from another host do not check out."""

    code = "DATA_LOSS"


class StorageFault(AgentError):
    """A VM's files are missing or unreadable."""

    code = "INTERNAL"


class ConfigError(AgentError):
    """The host configuration file is wrong; the message names the field."""

    code = "INVALID_ARGUMENT"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem
