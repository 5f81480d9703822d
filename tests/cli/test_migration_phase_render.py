"""The CLI shows a migration's phase as the same word whichever field carries it: the
enum from a current manager, the word alone from one older than the enum."""

from __future__ import annotations

from havm.cli import render
from havm.v1 import manager_pb2


def test_the_phase_reads_as_the_word_users_know() -> None:
    current = manager_pb2.Migration(
        phase="taken_over", manager_phase=manager_pb2.MANAGER_MIGRATION_PHASE_TAKEN_OVER
    )
    assert render.migration_phase(current) == "taken_over"
    assert render.migration_dict(current)["phase"] == "taken_over"
    older = manager_pb2.Migration(phase="pre_copy")
    assert render.migration_phase(older) == "pre_copy"
    assert render.migration_dict(manager_pb2.Migration())["phase"] is None
