"""A throw-away PKI for TLS tests, made with ``cryptography``: one CA and the certificates ITI-19 tests need.

RSA keys, because the BCP195 suites of ITI-19 are ECDHE-RSA / DHE-RSA. Every file is PEM in one directory.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Credential", "TestPKI", "make_pki"]

_ONE_DAY = datetime.timedelta(days=1)


@dataclass(frozen=True, kw_only=True)
class Credential:
    cert: Path
    key: Path
    sha256: str


@dataclass(frozen=True, kw_only=True)
class TestPKI:
    __test__ = False  # not a pytest test class

    directory: Path
    ca: Path
    crl: Path
    server: Credential
    client: Credential
    expired_client: Credential
    unknown_ca_client: Credential
    no_san_client: Credential
    revoked_client: Credential


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ihe-engine tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca(common_name: str, now: datetime.datetime) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = _key()
    cert = (x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(_name(common_name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - _ONE_DAY).not_valid_after(now + 365 * _ONE_DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def _leaf(common_name: str, issuer: tuple[x509.Certificate, rsa.RSAPrivateKey], *, san: list[x509.GeneralName] | None,
          not_before: datetime.datetime, not_after: datetime.datetime) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    issuer_cert, issuer_key = issuer
    key = _key()
    builder = (x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(issuer_cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                     ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                              critical=False))
    if san is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(issuer_key, hashes.SHA256()), key


def _write(directory: Path, name: str, cert: x509.Certificate, key: rsa.RSAPrivateKey) -> Credential:
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return Credential(cert=cert_path, key=key_path, sha256=cert.fingerprint(hashes.SHA256()).hex())


def _crl(ca: tuple[x509.Certificate, rsa.RSAPrivateKey], revoked: x509.Certificate,
         now: datetime.datetime) -> x509.CertificateRevocationList:
    entry = (x509.RevokedCertificateBuilder().serial_number(revoked.serial_number).revocation_date(now - _ONE_DAY)
             .build())
    return (x509.CertificateRevocationListBuilder().issuer_name(ca[0].subject).last_update(now - _ONE_DAY)
            .next_update(now + 30 * _ONE_DAY).add_revoked_certificate(entry).sign(ca[1], hashes.SHA256()))


def make_pki(directory: Path) -> TestPKI:
    """Write the CA bundle, a CRL and six credentials into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    valid = {"not_before": now - _ONE_DAY, "not_after": now + 30 * _ONE_DAY}
    ca, stranger_ca = _ca("ihe-engine test CA", now), _ca("unknown test CA", now)
    client_san = [x509.DNSName("client.example.test")]
    server = _leaf("localhost", ca, san=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
                   **valid)
    revoked = _leaf("revoked.example.test", ca, san=[x509.DNSName("revoked.example.test")], **valid)
    ca_path = directory / "ca.pem"
    ca_path.write_bytes(ca[0].public_bytes(serialization.Encoding.PEM))
    crl_path = directory / "crl.pem"
    crl_path.write_bytes(_crl(ca, revoked[0], now).public_bytes(serialization.Encoding.PEM))
    return TestPKI(
        directory=directory, ca=ca_path, crl=crl_path,
        server=_write(directory, "server", *server),
        client=_write(directory, "client", *_leaf("client.example.test", ca, san=client_san, **valid)),
        expired_client=_write(directory, "expired", *_leaf("expired.example.test", ca, san=client_san,
                                                            not_before=now - 60 * _ONE_DAY,
                                                            not_after=now - 30 * _ONE_DAY)),
        unknown_ca_client=_write(directory, "stranger", *_leaf("stranger.example.test", stranger_ca,
                                                               san=client_san, **valid)),
        no_san_client=_write(directory, "nosan", *_leaf("nosan.example.test", ca, san=None, **valid)),
        revoked_client=_write(directory, "revoked", *revoked),
    )
