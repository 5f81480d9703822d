"""How the CLI's client reads a failed call: grpc's own words for a connection that
never was or that broke are "cannot reach the manager", never printed as if the
manager had said them; a change is sent again only to a manager that was there.
(The manager's own UNAVAILABLE sentences are kept: tests/cli/test_jobs_and_errors.py.)"""

from __future__ import annotations

import grpc
import pytest

from havm.cli import errors
from havm.cli.client import ManagerClient
from havm.ports import free_ports


class FailedCall(grpc.RpcError, grpc.Call):  # type: ignore[misc]
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    # The rest of grpc.Call, unused here.
    def initial_metadata(self) -> None: ...
    def trailing_metadata(self) -> None: ...
    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> None: ...
    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: object) -> bool:
        return False


@pytest.fixture
def client() -> ManagerClient:
    return ManagerClient(f"127.0.0.1:{free_ports(1)[0]}")


@pytest.mark.parametrize(
    ("details", "broke"),
    [
        (
            "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: Connection refused",
            False,
        ),
        ("Socket closed", True),
        ("Connection reset by peer", True),
        ("recvmsg:Connection reset by peer", True),
    ],
)
def test_grpcs_words_for_a_lost_connection_are_cannot_reach(
    client: ManagerClient, details: str, broke: bool
) -> None:
    error = client._translate(FailedCall(grpc.StatusCode.UNAVAILABLE, details), 10)
    assert isinstance(error, errors.ManagerUnreachable)
    assert error.message.startswith(f"cannot reach the manager at {client.address} (")
    assert details not in error.message
    assert error.connection_broke is broke
    # A manager that never answered this command is not waited for; one whose
    # connection broke under a call is.
    assert client._lost_manager(error) is broke


def test_a_refusal_by_role_is_its_sentence(client: ManagerClient) -> None:
    said = "CreateVm needs the operator or admin role; the identity 'reader' is reader"
    error = client._translate(FailedCall(grpc.StatusCode.PERMISSION_DENIED, said), 10)
    assert isinstance(error, errors.PermissionDenied) and error.message == said
