# SPDX-License-Identifier: Apache-2.0
"""The generated certificates chain to the CA and name what the API server and RBAC expect."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from tests.cluster import pki


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_certificates_chain_to_the_ca_with_the_right_identities(tmp_path: Path) -> None:
    pki.generate(tmp_path)
    ca = _cert(tmp_path / "ca.crt")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    public_key = ca.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    identities = {
        "apiserver": ("kube-apiserver", None, ExtendedKeyUsageOID.SERVER_AUTH),
        "admin": ("inferplane-admin", "system:masters", ExtendedKeyUsageOID.CLIENT_AUTH),
        "kube-scheduler": ("system:kube-scheduler", None, ExtendedKeyUsageOID.CLIENT_AUTH),
    }
    for stem, (common_name, organization, usage) in identities.items():
        cert = _cert(tmp_path / f"{stem}.crt")
        cert.verify_directly_issued_by(ca)
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == common_name
        orgs = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
        assert orgs == ([organization] if organization else [])
        assert usage in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert (tmp_path / f"{stem}.key").stat().st_mode & 0o777 == 0o600
    names = _cert(tmp_path / "apiserver.crt").extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert "127.0.0.1" in [str(ip) for ip in names.value.get_values_for_type(x509.IPAddress)]
    assert (tmp_path / "sa.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
