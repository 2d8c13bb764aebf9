"""The erasure fence's decision rule (pure): which records a fenced node blocks, and its names."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from rdg_platform.kv.fence import ErasureFence, FenceKeyMissing, blocked, id_hash
from rdg_platform.model import GraphRecord

KEY = b"k" * 32
ENDPOINTS = {"started_watching": ("profile", "title"), "has_profile": ("account", "profile")}
ERASED_AT = 1_000_000


def _h(node_type: str, node_id: str) -> bytes:
    return hmac.new(KEY, f"{node_type}\0{node_id}".encode(), hashlib.sha256).digest()[:16]


# p1 (a profile) and a1 (an account) were erased at ERASED_AT
ENTRIES = {("profile", _h("profile", "p1")): ERASED_AT, ("account", _h("account", "a1")): ERASED_AT}


def test_id_hash_is_truncated_hmac_sha256_of_type_and_id() -> None:
    assert id_hash(KEY, "profile", "p1") == _h("profile", "p1")
    assert id_hash(b"other", "profile", "p1") != _h("profile", "p1")
    assert id_hash(KEY, "account", "p1") != _h("profile", "p1")


@pytest.mark.parametrize(("record", "is_blocked"), [
    (GraphRecord("node", "profile", "p1", None, {}, ERASED_AT - 1), True),     # older: blocked
    (GraphRecord("node", "profile", "p1", None, {}, ERASED_AT), True),         # same time: the delete wins
    (GraphRecord("node", "profile", "p1", None, {}, ERASED_AT + 1), False),    # newer: new activity
    (GraphRecord("node", "account", "p1", None, {}, ERASED_AT - 1), False),    # same id, other type
    (GraphRecord("node", "profile", "p2", None, {}, ERASED_AT - 1), False),    # not erased
    (GraphRecord("edge", "started_watching", "p1", "t9", {}, ERASED_AT - 5), True),   # from an erased node
    (GraphRecord("edge", "has_profile", "a2", "p1", {}, ERASED_AT - 5), True),        # to an erased node
    (GraphRecord("edge", "has_profile", "a1", "p7", {}, ERASED_AT - 5), True),        # erased source
    (GraphRecord("edge", "started_watching", "p1", "t9", {}, ERASED_AT + 5), False),  # newer edge
    (GraphRecord("edge", "started_watching", "p2", "t9", {}, ERASED_AT - 5), False),  # nobody erased
])
def test_blocked(record: GraphRecord, is_blocked: bool) -> None:
    assert blocked(record, ENTRIES, KEY, ENDPOINTS) is is_blocked


def test_a_fence_without_a_key_is_refused_naming_the_setting() -> None:
    with pytest.raises(FenceKeyMissing, match="RDG_ERASURE_FENCE_KEY"):
        ErasureFence(b"", lambda: [], ENDPOINTS)


def test_an_empty_fence_admits_everything_and_rereads_after_refresh() -> None:
    reads = []
    now = [0.0]

    def places() -> list[tuple[object, str]]:
        reads.append(now[0])
        return []

    fence = ErasureFence(KEY, places, ENDPOINTS, refresh_s=2.0, clock=lambda: now[0])  # type: ignore[arg-type]
    recs = [GraphRecord("node", "profile", "p1", None, {}, 1)]
    assert fence.admit(recs) is recs
    now[0] = 1.9
    fence.admit(recs)
    now[0] = 2.0
    fence.admit(recs)
    assert reads == [0.0, 2.0]
