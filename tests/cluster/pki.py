# SPDX-License-Identifier: Apache-2.0
"""Certificates and keys for the test cluster: one CA, the API server's serving certificate, an
admin client certificate (``system:masters``), the clients the API server itself uses (the
aggregation layer's front proxy, the kubelet client), the service-account key pair, and — through
``issue`` — the real node's certificates signed by the same CA."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALID = datetime.timedelta(days=365)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _issue(
    *,
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate | None,
    ca_key: ec.EllipticCurvePrivateKey,
    server: bool,
    addresses: tuple[str, ...] = (),
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject if ca_cert else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALID)
    )
    if ca_cert is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        )
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), False)
        if server:
            names: list[x509.GeneralName] = []
            for address in addresses:
                try:
                    names.append(x509.IPAddress(ipaddress.ip_address(address)))
                except ValueError:
                    names.append(x509.DNSName(address))
            builder = builder.add_extension(x509.SubjectAlternativeName(names), False)
    return builder.sign(ca_key, hashes.SHA256())


def _write_cert(cert: x509.Certificate, path: Path) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


API_SERVER_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "127.0.0.1",
    "10.0.0.1",
)
"""What clients dial: loopback from the host, the ``kubernetes`` Service (ClusterIP and names)
from pods; ``generate`` adds the machine's own address when the API server advertises it."""

FRONT_PROXY_CLIENT = "front-proxy-client"
"""The aggregation layer's client (``--proxy-client-cert-file``): the one name the API server's
``--requestheader-allowed-names`` accepts from an extension API server's point of view."""


def issue(
    directory: Path,
    stem: str,
    *,
    common_name: str,
    organization: str | None = None,
    server_addresses: tuple[str, ...] = (),
) -> None:
    """Write ``<stem>.{crt,key}`` signed by the CA in ``directory``: a serving certificate for
    ``server_addresses`` (IPs or DNS names) when given, else a client certificate."""
    ca_cert = x509.load_pem_x509_certificate((directory / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{directory / 'ca.key'} is not an EC key")
    key = _key()
    cert = _issue(
        subject=_name(common_name, organization),
        key=key,
        ca_cert=ca_cert,
        ca_key=ca_key,
        server=bool(server_addresses),
        addresses=server_addresses,
    )
    _write_cert(cert, directory / f"{stem}.crt")
    _write_key(key, directory / f"{stem}.key")


def generate(directory: Path, *, advertise_address: str | None = None) -> None:
    """Write ``ca.{crt,key}``, ``apiserver.*`` (valid for ``advertise_address`` too), client
    pairs for ``admin``, the two controllers (their built-in RBAC identities), the front proxy
    and the API server's kubelet client, and ``sa.{key,pub}``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca_cert = _issue(
        subject=_name("inferplane-test-ca"), key=ca_key, ca_cert=None, ca_key=ca_key, server=False
    )
    _write_cert(ca_cert, directory / "ca.crt")
    _write_key(ca_key, directory / "ca.key")
    extra = (advertise_address,) if advertise_address else ()
    issue(
        directory,
        "apiserver",
        common_name="kube-apiserver",
        server_addresses=(*API_SERVER_NAMES, *extra),
    )
    for stem, common_name, organization in (
        ("admin", "inferplane-admin", "system:masters"),
        ("kube-controller-manager", "system:kube-controller-manager", None),
        ("kube-scheduler", "system:kube-scheduler", None),
        ("front-proxy-client", FRONT_PROXY_CLIENT, None),
        ("apiserver-kubelet-client", "kube-apiserver-kubelet-client", None),
    ):
        issue(directory, stem, common_name=common_name, organization=organization)
    sa_key = _key()
    _write_key(sa_key, directory / "sa.key")
    (directory / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
