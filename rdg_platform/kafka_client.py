"""librdkafka client configuration from the Kafka settings: the one place security reaches clients.

Every Kafka client of the platform (Quix apps, the generator, the archive's window reader, lag
readers, admin calls) starts from :func:`client_config`, so a change of security protocol or
credentials applies to all of them at once.
"""

from __future__ import annotations

from typing import Any

from rdg_platform.settings import KafkaSettings


def client_config(kafka: KafkaSettings, **extra: Any) -> dict[str, Any]:
    """``bootstrap.servers`` plus the security settings, as librdkafka (confluent-kafka) spells them."""
    conf: dict[str, Any] = {"bootstrap.servers": kafka.bootstrap_servers}
    conf.update(security_config(kafka))
    conf.update(extra)
    return conf


def security_config(kafka: KafkaSettings) -> dict[str, str]:
    """Only the security part (for clients that take the bootstrap separately)."""
    conf: dict[str, str] = {}
    if kafka.security_protocol != "PLAINTEXT":
        conf["security.protocol"] = kafka.security_protocol
    if kafka.security_protocol.startswith("SASL"):
        if not (kafka.sasl_mechanism and kafka.sasl_username and kafka.sasl_password):
            raise ValueError(f"RDG_KAFKA_SECURITY_PROTOCOL={kafka.security_protocol} needs "
                             "RDG_KAFKA_SASL_MECHANISM, RDG_KAFKA_SASL_USERNAME and RDG_KAFKA_SASL_PASSWORD")
        conf["sasl.mechanism"] = kafka.sasl_mechanism
        conf["sasl.username"] = kafka.sasl_username
        conf["sasl.password"] = kafka.sasl_password.get_secret_value()
    if kafka.ssl_ca is not None:
        conf["ssl.ca.location"] = str(kafka.ssl_ca)
    return conf
