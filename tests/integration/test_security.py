"""Security on the real services: anonymous and wrong credentials are refused, and each role can do
its job and nothing more (Kafka SCRAM + ACLs, Cassandra roles)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from cassandra import Unauthorized
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import Cluster, NoHostAvailable, Session
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from rdg_platform.kafka_client import client_config
from rdg_platform.local_services.credentials import PRINCIPALS, Role, load_or_create
from rdg_platform.local_services.manager import ServiceError, ServiceManager
from rdg_platform.settings import Settings
from tests.support.session import as_role

pytestmark = pytest.mark.integration


def _kafka(cfg: Settings, role: Role) -> dict[str, str]:
    return client_config(as_role(cfg, role).kafka)


def _produce(conf: dict[str, str], topic: str) -> KafkaError | None:
    """Produce one record and return the delivery error (None = delivered)."""
    errors: list[KafkaError | None] = []
    p = Producer({**conf, "message.timeout.ms": 8000, "enable.idempotence": False})
    p.produce(topic, b"v", b"k", on_delivery=lambda err, _msg: errors.append(err))
    p.flush(15)
    return errors[0] if errors else KafkaError(KafkaError._MSG_TIMED_OUT)


def test_kafka_refuses_anonymous_and_wrong_password(cfg: Settings, services: ServiceManager) -> None:
    anonymous = AdminClient({"bootstrap.servers": cfg.kafka.bootstrap_servers, "log_level": 0})
    with pytest.raises(KafkaException):
        anonymous.list_topics(timeout=5)
    errors: list[KafkaError] = []
    wrong = {**_kafka(cfg, "upstream"), "sasl.password": "not-the-password", "error_cb": errors.append}
    client = AdminClient(wrong)
    with pytest.raises(KafkaException):
        client.list_topics(timeout=10)
    client.poll(1.0)  # error callbacks are served from poll
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors
    # Our own clients name what is missing before they even connect.
    no_creds = cfg.kafka.model_copy(update={"security_protocol": "SASL_PLAINTEXT", "sasl_username": None})
    with pytest.raises(ValueError, match="RDG_KAFKA_SASL_USERNAME"):
        client_config(no_creds)


def test_kafka_roles_do_their_job_and_nothing_more(cfg: Settings, services: ServiceManager) -> None:
    spec = cfg.load_spec()
    from rdg_platform.topology import ensure_topics

    ensure_topics(cfg.kafka.bootstrap_servers, spec, admin_conf={k: v for k, v in _kafka(cfg, "admin").items()
                                                                 if k != "bootstrap.servers"})
    # upstream may write a source topic ...
    assert _produce(_kafka(cfg, "upstream"), "member.login") is None
    # ... but not a graph topic, and cannot read graph topics
    err = _produce(_kafka(cfg, "upstream"), "graph.node.account")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    c = Consumer({**_kafka(cfg, "upstream"), "group.id": f"{cfg.streaming.group_prefix}-sec-{uuid.uuid4().hex[:6]}",
                  "auto.offset.reset": "earliest"})
    try:
        c.subscribe(["graph.node.account"])
        seen: KafkaError | None = None
        for _ in range(20):
            msg = c.poll(1.0)
            if msg is not None and msg.error():
                seen = msg.error()
                break
        assert seen is not None and seen.code() in (KafkaError.TOPIC_AUTHORIZATION_FAILED,
                                                    KafkaError.GROUP_AUTHORIZATION_FAILED)
    finally:
        c.close()
    # the apps may write graph topics, not source topics
    assert _produce(_kafka(cfg, "app"), "graph.node.account") is None
    err = _produce(_kafka(cfg, "app"), "member.login")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # only admin manages topics
    from confluent_kafka.admin import NewTopic

    app_admin = AdminClient(_kafka(cfg, "app"))
    fut = app_admin.create_topics([NewTopic(f"sec-{uuid.uuid4().hex[:6]}", 1, 1)])
    with pytest.raises(KafkaException, match="(?i)authoriz"):
        next(iter(fut.values())).result(timeout=15)


def _session(cfg: Settings, user: str | None, password: str | None,
             keyspace: str | None = None) -> tuple[Cluster, Session]:
    auth = PlainTextAuthProvider(username=user, password=password) if user else None
    cluster = Cluster(cfg.cassandra.hosts, port=cfg.cassandra.port, auth_provider=auth, connect_timeout=5)
    return cluster, cluster.connect(keyspace)


def test_cassandra_refuses_anonymous_and_wrong_password(cfg: Settings, services: ServiceManager) -> None:
    with pytest.raises(NoHostAvailable, match="(?i)authentication|credentials|requires authentication"):
        _session(cfg, None, None)
    with pytest.raises(NoHostAvailable, match="(?i)authentication|credentials"):
        _session(cfg, PRINCIPALS["reader"], "wrong")
    with pytest.raises(NoHostAvailable, match="(?i)authentication|credentials"):
        _session(cfg, "cassandra", "cassandra")  # the default superuser's password was replaced


def test_cassandra_roles_do_their_job_and_nothing_more(cfg: Settings, services: ServiceManager) -> None:
    creds = load_or_create(cfg.state_dir)
    ks = cfg.cassandra.keyspace
    admin_c, admin = _session(cfg, PRINCIPALS["admin"], creds.password("admin"), ks)
    app_c, app = _session(cfg, PRINCIPALS["app"], creds.password("app"), ks)
    reader_c, reader = _session(cfg, PRINCIPALS["reader"], creds.password("reader"), ks)
    try:
        admin.execute("CREATE TABLE IF NOT EXISTS security_probe (k text PRIMARY KEY, v text)")
        app.execute("INSERT INTO security_probe (k, v) VALUES (%s, %s)", ("a", "1"))
        row = reader.execute("SELECT v FROM security_probe WHERE k = %s", ("a",)).one()
        assert row.v == "1"
        with pytest.raises(Unauthorized):
            reader.execute("INSERT INTO security_probe (k, v) VALUES (%s, %s)", ("b", "2"))
        with pytest.raises(Unauthorized):
            app.execute("DROP TABLE security_probe")
        with pytest.raises(Unauthorized):
            app.execute("CREATE TABLE security_probe_x (k text PRIMARY KEY)")
    finally:
        admin.execute("DROP TABLE IF EXISTS security_probe")
        for c in (admin_c, app_c, reader_c):
            c.shutdown()


def test_secrets_stay_out_of_logs(cfg: Settings, services: ServiceManager) -> None:
    creds = load_or_create(cfg.state_dir)
    secrets = [*creds.passwords.values(), creds.broker_password, creds.cassandra_superuser_password,
               *creds.api_tokens.values()]
    logs = [p for p in (cfg.state_dir / "logs").rglob("*") if p.is_file()]
    assert logs, "no log files to check"
    for p in logs:
        text = p.read_text(errors="replace")
        leaked = [s[:4] + "…" for s in secrets if s in text]
        assert not leaked, f"{p} contains secrets {leaked}"


def test_servers_listen_on_loopback_only(cfg: Settings, services: ServiceManager) -> None:
    """The registry has no authentication (Apicurio 2.6 needs an OIDC server), so it must never listen
    beyond loopback; Kafka and Cassandra listen where their own bind hosts say (loopback by default)."""
    import psutil

    for name in ("registry", "kafka", "cassandra"):
        st = services.status([name])[name]
        assert st.pid is not None
        proc = psutil.Process(st.pid)
        listening = [c.laddr for c in proc.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
        assert listening, f"{name} listens nowhere?"
        assert all(a.ip in ("127.0.0.1", "::1", "::ffff:127.0.0.1") for a in listening), (name, listening)


def test_registry_refuses_a_non_loopback_bind_host(tmp_path: Path) -> None:
    from tests.support.session import isolated_settings

    s = isolated_settings(tmp_path / "state")
    s = s.model_copy(update={"registry": s.registry.model_copy(update={"bind_host": "0.0.0.0"})})
    with pytest.raises(ServiceError, match="RDG_REGISTRY_BIND_HOST=0.0.0.0.*loopback"):
        ServiceManager(s).up(["registry"], timeout=30)


def test_kafka_sasl_ssl_listener(tmp_path: Path) -> None:
    """SASL_SSL is configurable: with RDG_KAFKA_SSL_PORT the local broker also listens SCRAM over TLS,
    with a server certificate from a CA generated in the state dir. A client trusting that CA
    produces and consumes; a client trusting another CA is refused before SASL starts."""
    from confluent_kafka.admin import AdminClient, NewTopic

    from rdg_platform.local_services.base import free_ports
    from rdg_platform.local_services.kafka import KafkaService
    from rdg_platform.local_services.tls import ensure_ca
    from tests.support.session import isolated_settings

    base = isolated_settings(tmp_path / "state")
    ssl_port = free_ports(1)[0]
    s = base.model_copy(update={"kafka": base.kafka.model_copy(update={"ssl_port": ssl_port})})
    manager = ServiceManager(s)
    try:
        manager.up(["kafka"])
        ca = KafkaService(s).tls_dir / "ca.crt"
        assert ca.is_file()
        tls = s.kafka.model_copy(update={"bootstrap": f"127.0.0.1:{ssl_port}", "security_protocol": "SASL_SSL",
                                         "ssl_ca": ca})
        conf = client_config(tls)
        assert conf["security.protocol"] == "SASL_SSL" and conf["ssl.ca.location"] == str(ca)
        admin = AdminClient(conf)
        topic = f"tls-{uuid.uuid4().hex[:6]}"
        admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=30)
        assert _produce(conf, topic) is None
        c = Consumer({**conf, "group.id": f"tls-{uuid.uuid4().hex[:6]}", "auto.offset.reset": "earliest"})
        try:
            c.subscribe([topic])
            got = None
            for _ in range(30):
                msg = c.poll(1.0)
                if msg is not None and not msg.error():
                    got = msg.value()
                    break
            assert got == b"v"
        finally:
            c.close()
        # a client that trusts another CA does not get past the TLS handshake
        _key, _crt = ensure_ca(tmp_path / "other-ca", "someone-else")
        errors: list[KafkaError] = []
        other = AdminClient({**conf, "ssl.ca.location": str(tmp_path / "other-ca" / "ca.crt"),
                             "error_cb": errors.append})
        with pytest.raises(KafkaException):
            other.list_topics(timeout=10)
        other.poll(1.0)
        assert any(e.code() == KafkaError._SSL for e in errors), errors
    finally:
        manager.down(purge=True)
