"""A small local certificate authority: the TLS material of the local services (the Kubernetes
control plane, Kafka's SASL_SSL listener), generated once per state directory with ``cryptography``.

Keys are written 0600; leaf certificates are reissued from the same CA when they near expiry or when
the key usages wanted change, so configurations handed out earlier (a kubeconfig, a client's CA file)
stay valid.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from rdg_platform.local_services.base import write_private

CERT_DAYS = 825
CA_DAYS = 3650
RENEW_BEFORE = dt.timedelta(days=30)
SERVER = [ExtendedKeyUsageOID.SERVER_AUTH]


def write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    write_private(
        path,
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )


def write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def is_current(cert_path: Path, usages: list[x509.ObjectIdentifier]) -> bool:
    """True if the certificate is not near expiry and carries exactly the extended key usages wanted."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    if cert.not_valid_after_utc - dt.datetime.now(dt.UTC) < RENEW_BEFORE:
        return False
    try:
        have = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        have = set()
    return have == set(usages)


def certificate(
    common_name: str,
    public_key: ec.EllipticCurvePublicKey,
    signing_key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    *,
    days: int,
    is_ca: bool = False,
    dns: list[str] | None = None,
    ips: list[str] | None = None,
    usages: list[x509.ObjectIdentifier] | None = None,
) -> x509.Certificate:
    """A certificate for ``public_key`` signed by ``signing_key`` (self-signed when no issuer)."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer is not None else subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if is_ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=True,
                data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        if usages:
            builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns or []]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips or []]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if issuer is not None:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    return builder.sign(signing_key, hashes.SHA256())


def ensure_ca(directory: Path, name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The CA in ``directory`` (``ca.key``, ``ca.crt``), created on first use."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    key_path, crt_path = directory / "ca.key", directory / "ca.crt"
    if not (key_path.is_file() and crt_path.is_file()):
        key = ec.generate_private_key(ec.SECP256R1())
        write_key(key_path, key)
        write_cert(crt_path, certificate(name, key.public_key(), key, None, days=CA_DAYS, is_ca=True))
    loaded = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_path} is not an EC private key; delete {directory} to regenerate")
    return loaded, x509.load_pem_x509_certificate(crt_path.read_bytes())


def ensure_leaf(directory: Path, name: str, *, dns: list[str], ips: list[str],
                usages: list[x509.ObjectIdentifier]) -> tuple[Path, Path]:
    """``<name>.crt`` and ``<name>.key`` signed by the CA in ``directory`` (reissued when stale)."""
    ca_key, ca_cert = ensure_ca(directory, f"rdg-local-ca-{directory.name}")
    crt, key = directory / f"{name}.crt", directory / f"{name}.key"
    if not (key.is_file() and crt.is_file() and is_current(crt, usages)):
        leaf_key = ec.generate_private_key(ec.SECP256R1())
        write_key(key, leaf_key)
        write_cert(crt, certificate(f"rdg-{name}", leaf_key.public_key(), ca_key, ca_cert, days=CERT_DAYS,
                                    dns=dns, ips=ips, usages=usages))
    return crt, key
