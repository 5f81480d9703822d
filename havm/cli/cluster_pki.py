"""The cluster's certificate authority and the identities it issues.

`havm up` keeps one CA per state directory (`pki/`, directory 0700, files 0600) and
issues an identity file to every component: the manager, each agent by its host's
name and cluster, and three clients for the CLI (admin, operator, reader). An
identity file holds the certificate, its private key and the CA's certificate
(havm.contract.identity reads it). `havm pki issue` issues the same files for
components that run elsewhere (containers), from the same CA.

Keys are ECDSA P-256: issuing a few hundred of them takes well under a second.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from havm.cli.private_files import private_dir, write_private
from havm.contract.identity import (
    CLIENT_ROLES,
    CLUSTER_URI_PREFIX,
    MANAGER_NAME,
    IdentityError,
    PeerIdentity,
    Role,
    parse_identity,
)
from havm.contract.topology import Topology

PKI_DIR = "pki"
CA_CERT = "ca.pem"
CA_KEY = "ca.key"
# Long enough that a cluster kept for years never meets an expired certificate.
VALIDITY = datetime.timedelta(days=3650)
# Clock skew between the machines of a cluster in containers.
BACKDATE = datetime.timedelta(hours=1)


class PkiError(Exception):
    """The CA's files cannot be read or written; the message names which."""


@dataclass(frozen=True)
class CertificateAuthority:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_or_create_ca(directory: Path) -> CertificateAuthority:
    """The CA of `directory`, made on first use."""
    private_dir(directory)
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    if cert_path.exists() and key_path.exists():
        try:
            certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise PkiError(f"{directory}: the cluster CA cannot be read ({exc})") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise PkiError(f"{key_path}: not an EC private key")
        return CertificateAuthority(certificate, key)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "havm"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"havm cluster CA {now:%Y-%m-%d %H:%M:%S}"),
        ]
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    write_private(key_path, _pem_key(key))
    write_private(cert_path, certificate.public_bytes(serialization.Encoding.PEM))
    return CertificateAuthority(certificate, key)


def issue(ca: CertificateAuthority, role: Role, name: str, cluster: str | None = None) -> bytes:
    """An identity file's bytes: a certificate for `role` and `name`, its key, the CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    alternatives: list[x509.GeneralName] = [x509.DNSName(name)]
    if cluster:
        alternatives.append(x509.UniformResourceIdentifier(CLUSTER_URI_PREFIX + cluster))
    certificate = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "havm"),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role.value),
                    x509.NameAttribute(NameOID.COMMON_NAME, name),
                ]
            )
        )
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
        .add_extension(
            # Every component is a server to some and a client to others (an agent
            # serves the manager and opens migration streams to its peers).
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
        .sign(ca.key, hashes.SHA256())
    )
    return (
        certificate.public_bytes(serialization.Encoding.PEM)
        + _pem_key(key)
        + ca.certificate.public_bytes(serialization.Encoding.PEM)
    )


@dataclass(frozen=True)
class ClusterIdentities:
    """Where a state directory's identity files are."""

    root: Path

    @classmethod
    def of(cls, state_dir: Path) -> ClusterIdentities:
        return cls(state_dir / PKI_DIR)

    @property
    def manager(self) -> Path:
        return self.root / "manager.pem"

    def agent(self, host: str) -> Path:
        return self.root / "agents" / f"{host}.pem"

    def client(self, role: Role) -> Path:
        return self.root / "clients" / f"{role.value}.pem"

    @property
    def ca_certificate(self) -> Path:
        return self.root / CA_CERT


def _ensure(ca: CertificateAuthority, path: Path, role: Role, name: str, cluster: str | None) -> None:
    """Issue `path` unless it holds a valid identity of this CA for exactly this role,
    name and cluster (a host that moved to another cluster gets a new one)."""
    if path.exists():
        try:
            held = parse_identity(path.read_bytes(), str(path))
        except (OSError, IdentityError):
            held = None
        wanted = PeerIdentity(role, name, cluster or None)
        ca_pem = ca.certificate.public_bytes(serialization.Encoding.PEM)
        if held is not None and held.ca_pem == ca_pem and held.identity == wanted:
            return
    private_dir(path.parent)
    write_private(path, issue(ca, role, name, cluster))


def ensure_host_identity(state_dir: Path, host: str, cluster: str | None) -> Path:
    """One agent's identity file (for a host `havm host add` brings in)."""
    files = ClusterIdentities.of(state_dir)
    ca = load_or_create_ca(files.root)
    _ensure(ca, files.agent(host), Role.AGENT, host, cluster)
    return files.agent(host)


def ensure_cluster_identities(state_dir: Path, topology: Topology) -> ClusterIdentities:
    """The CA and every identity the local cluster of `topology` needs."""
    files = ClusterIdentities.of(state_dir)
    try:
        ca = load_or_create_ca(files.root)
        _ensure(ca, files.manager, Role.MANAGER, MANAGER_NAME, None)
        for role in CLIENT_ROLES:
            _ensure(ca, files.client(role), role, role.value, None)
        for host in topology.hosts:
            _ensure(ca, files.agent(host.name), Role.AGENT, host.name, host.cluster)
    except OSError as exc:
        raise PkiError(f"{files.root}: cannot write the cluster's certificates ({exc.strerror})") from None
    return files
