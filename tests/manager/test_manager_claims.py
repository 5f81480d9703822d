"""VmClaims: who works on which VM, one object instead of sets services reach into."""

from __future__ import annotations

import pytest

from manager.app.claims import Claim, VmClaims


def test_claims_by_kind_and_in_all() -> None:
    claims = VmClaims()
    claims.claim("a", Claim.JOB)
    claims.claim("b", Claim.MIGRATION)
    claims.claim("c", Claim.RESTART)
    assert claims.claimed() == {"a", "b", "c"}
    assert claims.claimed(Claim.MIGRATION) == {"b"}
    assert claims.holds("c", Claim.RESTART) and not claims.holds("c", Claim.JOB)
    claims.release("b", Claim.MIGRATION)
    claims.release("b", Claim.MIGRATION)  # twice: harmless
    assert claims.claimed() == {"a", "c"}


def test_a_held_claim_is_released_when_the_work_fails() -> None:
    claims = VmClaims()
    with pytest.raises(RuntimeError), claims.held("a", Claim.JOB):
        assert claims.holds("a", Claim.JOB)
        raise RuntimeError("the job broke")
    assert claims.claimed() == set()
