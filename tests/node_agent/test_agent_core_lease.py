"""Lease decisions: which copy of a VM may write, who may take it over, what recovery keeps."""

from __future__ import annotations

import pytest

from node_agent.core.errors import FailedPrecondition, InvalidArgument
from node_agent.core.lease import (
    Fenced,
    Lease,
    check_write,
    hand_over_lease,
    is_fenced,
    is_stale_copy,
    recovery_verdict,
    take_over_lease,
)
from node_agent.core.power import PowerState


@pytest.mark.parametrize(
    ("held", "on_storage", "fenced"),
    [
        (1, None, False),
        (1, Lease(1, "node1"), False),
        (2, Lease(1, "node1"), False),
        (1, Lease(2, "node2"), True),
        (1, Lease(2, "node1"), True),
        (1, Lease(1, "node2"), True),
    ],
)
def test_is_fenced(held: int, on_storage: Lease | None, fenced: bool) -> None:
    assert is_fenced("node1", held, on_storage) is fenced


def test_check_write_names_the_new_owner() -> None:
    check_write("web1", "node1", 3, Lease(3, "node1"))
    with pytest.raises(Fenced) as caught:
        check_write("web1", "node1", 3, Lease(4, "node3"))
    assert caught.value.message == "VM web1 fenced: the lease moved to node3 (generation 4)"
    assert caught.value.code == "FAILED_PRECONDITION"


def test_take_over_needs_a_newer_generation() -> None:
    assert take_over_lease("web1", "node2", 2, Lease(1, "node1")) == Lease(2, "node2")
    assert take_over_lease("web1", "node2", 1, None) == Lease(1, "node2")
    with pytest.raises(FailedPrecondition) as caught:
        take_over_lease("web1", "node2", 3, Lease(4, "node1"))
    assert caught.value.message == "cannot take over VM web1: stale lease generation 3: storage holds 4"
    with pytest.raises(FailedPrecondition):
        take_over_lease("web1", "node2", 4, Lease(4, "node1"))
    with pytest.raises(InvalidArgument) as bad:
        take_over_lease("web1", "node2", 0, Lease(1, "node1"))
    assert bad.value.message.startswith("lease_generation: must be positive")


def test_recovery_forgets_copies_whose_lease_moved() -> None:
    assert recovery_verdict("node1", 1, Lease(1, "node1")) is None
    assert recovery_verdict("node1", 1, None) is None
    assert recovery_verdict("node1", None, Lease(5, "node1")) is None
    assert recovery_verdict("node1", 1, Lease(2, "node2")) == "the lease is held by node2 (generation 2)"
    assert recovery_verdict("node1", 1, Lease(2, "node1")) == (
        "the lease moved to generation 2; this host held 1"
    )


def test_a_hand_over_needs_the_lease_to_be_still_this_copys() -> None:
    new = Lease(2, "node2")
    assert hand_over_lease("web1", "node1", 1, new, Lease(1, "node1")) == new
    # A failover took the VM meanwhile, with the same or a newer generation.
    for taken in (Lease(2, "node3"), Lease(3, "node3"), Lease(1, "node3")):
        with pytest.raises(Fenced) as caught:
            hand_over_lease("web1", "node1", 1, new, taken)
        assert caught.value.lease == taken
    with pytest.raises(FailedPrecondition) as missing:
        hand_over_lease("web1", "node1", 1, new, None)
    assert missing.value.message == (
        "cannot hand VM web1 over: its storage holds no lease, not generation 1 of host node1"
    )
    with pytest.raises(FailedPrecondition) as stale:
        hand_over_lease("web1", "node1", 2, new, Lease(2, "node1"))
    assert "stale lease generation 2" in stale.value.message


@pytest.mark.parametrize(
    ("state", "held", "on_storage", "stale"),
    [
        # Taken over by another host at a newer generation: let go, at rest in any way.
        (PowerState.STOPPED, 1, Lease(2, "node2"), True),
        (PowerState.SAVED, 3, Lease(5, "node2"), True),
        (PowerState.FAILED, 1, Lease(2, "node2"), True),
        # A guest in memory finds out by itself, at its next lease check.
        (PowerState.RUNNING, 1, Lease(2, "node2"), False),
        (PowerState.PAUSED, 1, Lease(2, "node2"), False),
        (PowerState.STARTING, 1, Lease(2, "node2"), False),
        # The copy holds the lease, or nobody holds a newer one: kept.
        (PowerState.STOPPED, 2, Lease(2, "node1"), False),
        (PowerState.STOPPED, 1, Lease(3, "node1"), False),
        (PowerState.STOPPED, 2, Lease(1, "node2"), False),
        (PowerState.STOPPED, 1, None, False),
    ],
)
def test_is_stale_copy(state: PowerState, held: int, on_storage: Lease | None, stale: bool) -> None:
    assert is_stale_copy("node1", state, held, on_storage) is stale
