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
