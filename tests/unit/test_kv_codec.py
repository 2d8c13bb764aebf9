"""Pure parts of the KV layer: property codec, statement parameters, token ranges, cluster config."""

from __future__ import annotations

from pathlib import Path

import pytest
from cassandra.query import UNSET_VALUE

from rdg_platform.kv.cluster import ClusterConfig, Credentials, _make_cluster
from rdg_platform.kv.codec import decode_props, encode_props
from rdg_platform.kv.store import MAX_TOKEN, MIN_TOKEN, KVStore, _prefix_end, token_ranges
from rdg_platform.settings import load_settings


def test_props_roundtrip_keeps_types_and_drops_none() -> None:
    props = {"n": 42, "s": "x", "l": ["a", "b"], "b": True, "f": 1.5, "none": None}
    enc = encode_props(props)
    assert set(enc) == {"n", "s", "l", "b", "f"} and all(isinstance(v, str) for v in enc.values())
    assert decode_props(enc) == {"n": 42, "s": "x", "l": ["a", "b"], "b": True, "f": 1.5}
    assert decode_props(None) == {}
    assert decode_props({"raw": "not json"}) == {"raw": "not json"}


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


def test_credentials_come_from_the_cassandra_settings() -> None:
    import certifi

    c = load_settings({"RDG_CASSANDRA_USERNAME": "app", "RDG_CASSANDRA_PASSWORD": "s3cret",
                       "RDG_CASSANDRA_SSL_CA": certifi.where()}).cassandra
    creds = Credentials.of(c)
    assert (creds.username, creds.password, str(creds.ssl_ca)) == ("app", "s3cret", certifi.where())
    assert "s3cret" not in repr(creds)
    assert Credentials.of(None) == Credentials() == Credentials.of(load_settings({}).cassandra)


def test_cluster_logs_in_and_verifies_tls_when_configured() -> None:
    """The driver's Cluster gets a PlainTextAuthProvider and an SSLContext (built, never connected)."""
    import ssl

    import certifi
    from cassandra.auth import PlainTextAuthProvider

    cluster = _make_cluster(ClusterConfig("c", ("127.0.0.1",), 9042, "dc1",
                                          credentials=Credentials("app", "pw", Path(certifi.where()))))
    try:
        assert isinstance(cluster.auth_provider, PlainTextAuthProvider)
        assert cluster.auth_provider.username == "app" and cluster.auth_provider.password == "pw"
        assert isinstance(cluster.ssl_context, ssl.SSLContext)
        assert cluster.ssl_context.verify_mode == ssl.CERT_REQUIRED
    finally:
        cluster.shutdown()
    plain = _make_cluster(ClusterConfig("c", ("127.0.0.1",), 9042, "dc1"))
    try:
        assert plain.auth_provider is None and plain.ssl_context is None
    finally:
        plain.shutdown()


def test_blob_roundtrip_and_format_byte() -> None:
    from rdg_platform.kv.codec import BLOB_V1, CodecError, decode_blob, encode_blob

    props = {"n": 42, "s": "x", "l": ["a", "b"], "b": True, "f": 1.5, "none": None}
    blob = encode_blob(props)
    assert blob[0] == BLOB_V1
    assert decode_blob(blob) == {"n": 42, "s": "x", "l": ["a", "b"], "b": True, "f": 1.5}
    assert encode_blob({"b": 1, "a": 2}) == encode_blob({"a": 2, "b": 1})  # key order never matters
    with pytest.raises(CodecError, match="format 9 is unknown"):
        decode_blob(b"\x09abc")
    with pytest.raises(CodecError, match="corrupt"):
        decode_blob(b"\x01\xc1")


def test_map_entries_win_over_the_blob() -> None:
    """A surviving map entry is never older than the blob (the full write tombstoned older ones)."""
    from rdg_platform.kv.codec import decode_props, encode_blob, merge_props

    blob = encode_blob({"country": "FR", "plan": "basic"})
    assert merge_props({"plan": '"premium"'}, blob) == {"country": "FR", "plan": "premium"}
    assert decode_props(({"plan": '"premium"'}, blob)) == {"country": "FR", "plan": "premium"}
    assert decode_props((None, blob)) == {"country": "FR", "plan": "basic"}
    assert decode_props((None, None)) == {} and decode_props({"a": "1"}) == {"a": 1}


def test_checksum_line_depends_on_state_not_layout() -> None:
    """One full write vs the same values as map cells with the same write times: same line."""
    from rdg_platform.kv.codec import checksum_line, encode_blob

    blob_row = checksum_line("r", "k", 5, 5000, None, None, encode_blob({"a": 1, "b": "x"}), 5000)
    map_row = checksum_line("r", "k", 5, 5000, {"a": "1", "b": '"x"'}, [5000, 5000], None, None)
    assert blob_row == map_row == "r\x1ek\x1e5\x1e5000\x1ea=1@5000\x1eb=\"x\"@5000"
    mixed = checksum_line("r", "k", 6, 6000, {"a": "2"}, [6000], encode_blob({"a": 1, "b": "x"}), 5000)
    assert mixed.endswith("a=2@6000\x1eb=\"x\"@5000")
