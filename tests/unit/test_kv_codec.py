"""Pure parts of the KV layer: property/tokens codecs, statement parameters, token ranges."""

from __future__ import annotations

import pytest
from cassandra.query import UNSET_VALUE

from rdg_platform.kv.codec import BadPageTokenError, decode_props, decode_token, encode_props, encode_token
from rdg_platform.kv.store import MAX_TOKEN, MIN_TOKEN, KVStore, _prefix_end, token_ranges


def test_props_roundtrip_keeps_types_and_drops_none() -> None:
    props = {"n": 42, "s": "x", "l": ["a", "b"], "b": True, "f": 1.5, "none": None}
    enc = encode_props(props)
    assert set(enc) == {"n", "s", "l", "b", "f"} and all(isinstance(v, str) for v in enc.values())
    assert decode_props(enc) == {"n": 42, "s": "x", "l": ["a", "b"], "b": True, "f": 1.5}
    assert decode_props(None) == {}
    assert decode_props({"raw": "not json"}) == {"raw": "not json"}


def test_page_tokens_are_opaque_and_checked() -> None:
    tok = encode_token({"o": "any", "k": "dev/1 é"})
    assert decode_token(tok, "any") == {"o": "any", "k": "dev/1 é"}
    with pytest.raises(BadPageTokenError, match="order=latest"):
        decode_token(tok, "latest")
    for bad in ("", "!!!", "eyJ4IjoxfQ", "bnVsbA"):
        with pytest.raises(BadPageTokenError):
            decode_token(bad, "any")


def test_upsert_params_unset_instead_of_null() -> None:
    p = KVStore.upsert_params("r", "k", None, None, 1_234, 0)
    assert p[0] == 1_234_000 and p[1] == 0 and p[2] is UNSET_VALUE and p[3] is UNSET_VALUE
    assert p[4:] == (1_234, "r", "k")
    p = KVStore.upsert_params("r", "k", {"a": 1}, b"v", 5, 60)
    assert p[1] == 60 and p[2] == {"a": "1"} and p[3] == b"v"


def test_prefix_end_and_token_ranges() -> None:
    assert _prefix_end("ab") == "ac" and "abzzz" < _prefix_end("ab")
    rs = token_ranges(4)
    assert rs[0][0] == MIN_TOKEN and rs[-1][1] == MAX_TOKEN and len(rs) == 4
    assert all(a[1] == b[0] for a, b in zip(rs, rs[1:], strict=False))
    with pytest.raises(ValueError):
        token_ranges(0)
