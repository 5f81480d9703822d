"""Who is at the other end of a havm gRPC connection, as its certificate says.

Every component of a secured cluster holds one identity: a certificate issued by the
cluster's CA naming its role and its name (and, for an agent, its cluster), its private
key, and the CA's certificate to judge its peers by. The three travel as one PEM file
(an *identity file*), so that a container, a user's test or the CLI's `--identity`
take one path.

What a certificate says is decided here and nowhere else: the role is the subject's
organizational unit, the name its common name; an agent's cluster is a URI in its
subject alternative names. Servers call `peer_identity` on a call's context and
decide by role, never by parsing names.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID

# An agent's cluster, as a URI in its certificate's subject alternative names.
CLUSTER_URI_PREFIX = "urn:havm:cluster:"
# What a client expects the manager's certificate to name, whatever address it dialed.
MANAGER_NAME = "manager"
# An identity file is a few kilobytes; anything larger is not one.
MAX_IDENTITY_BYTES = 64 * 1024


class Role(enum.Enum):
    """What a certificate lets its holder do; servers map roles to the calls they allow."""

    MANAGER = "manager"  # the cluster's manager: orders agents
    AGENT = "agent"  # one emulated host: serves the manager, streams migrations to peers
    ADMIN = "admin"  # a client allowed everything, also direct calls to agents
    OPERATOR = "operator"  # a client for VM and host operations
    READER = "reader"  # a client that only reads


CLIENT_ROLES = (Role.ADMIN, Role.OPERATOR, Role.READER)


@dataclass(frozen=True)
class PeerIdentity:
    role: Role
    name: str
    cluster: str | None = None

    def describe(self) -> str:
        where = f" of cluster {self.cluster}" if self.cluster else ""
        return f"{self.role.value} identity {self.name!r}{where}"


class IdentityError(Exception):
    """An identity file or a certificate that cannot serve: the message names what is wrong."""


def identity_of(certificate: x509.Certificate) -> PeerIdentity:
    """The role, name and cluster a certificate of the cluster's CA names."""
    subject = certificate.subject
    units = subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    names = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(units) != 1 or len(names) != 1:
        raise IdentityError("the certificate names no havm role (OU) and name (CN)")
    try:
        role = Role(str(units[0].value))
    except ValueError:
        raise IdentityError(f"the certificate's role {units[0].value!r} is no havm role") from None
    cluster = None
    try:
        alternatives = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        alternatives = None
    if alternatives is not None:
        for uri in alternatives.get_values_for_type(x509.UniformResourceIdentifier):
            if uri.startswith(CLUSTER_URI_PREFIX):
                cluster = uri.removeprefix(CLUSTER_URI_PREFIX)
    return PeerIdentity(role, str(names[0].value), cluster)


@dataclass(frozen=True)
class IdentityFile:
    """One component's credentials, as grpc takes them (PEM bytes)."""

    certificate_pem: bytes
    private_key_pem: bytes
    ca_pem: bytes
    identity: PeerIdentity

    def server_credentials(self) -> grpc.ServerCredentials:
        """Mutual TLS: a client without a certificate of the cluster's CA is not served."""
        return grpc.ssl_server_credentials(
            [(self.private_key_pem, self.certificate_pem)],
            root_certificates=self.ca_pem,
            require_client_auth=True,
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_pem,
            private_key=self.private_key_pem,
            certificate_chain=self.certificate_pem,
        )


def expect_peer(name: str) -> list[tuple[str, str]]:
    """Channel options that make TLS check the server's certificate names `name`, the
    identity the caller means, whatever address it dialed (127.0.0.1, a container alias)."""
    return [("grpc.ssl_target_name_override", name)]


def parse_identity(data: bytes, source: str) -> IdentityFile:
    """An identity file's bytes: its certificate, its key and the CA's certificate, in
    any order. `source` names the file in errors."""
    if len(data) > MAX_IDENTITY_BYTES:
        raise IdentityError(f"{source}: {len(data)} bytes is too large for an identity file")
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise IdentityError(f"{source}: holds no PEM certificate") from None
    authorities = [c for c in certificates if _is_ca(c)]
    leaves = [c for c in certificates if not _is_ca(c)]
    if len(authorities) != 1 or len(leaves) != 1:
        raise IdentityError(
            f"{source}: must hold one certificate and the CA's certificate, "
            f"found {len(leaves)} and {len(authorities)}"
        )
    key = _private_key(data, source)
    leaf, authority = leaves[0], authorities[0]
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.PEM
    if key.public_key().public_bytes(encoding, public) != leaf.public_key().public_bytes(encoding, public):
        raise IdentityError(f"{source}: the private key is not the certificate's")
    try:
        leaf.verify_directly_issued_by(authority)
    except (ValueError, TypeError, InvalidSignature):
        raise IdentityError(f"{source}: the certificate is not issued by the CA in the file") from None
    try:
        identity = identity_of(leaf)
    except IdentityError as exc:
        raise IdentityError(f"{source}: {exc}") from None
    return IdentityFile(
        certificate_pem=leaf.public_bytes(encoding),
        private_key_pem=key.private_bytes(
            encoding, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        ca_pem=authority.public_bytes(encoding),
        identity=identity,
    )


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return bool(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _private_key(data: bytes, source: str) -> PrivateKeyTypes:
    marker = b"PRIVATE KEY-----"
    start = data.find(b"-----BEGIN ")
    while start != -1:
        end_of_header = data.find(b"-----", start + 11)
        header = data[start : end_of_header + 5]
        if header.endswith(marker):
            kind = header[len(b"-----BEGIN ") : -5].decode()
            footer = f"-----END {kind}-----".encode()
            stop = data.find(footer, end_of_header)
            if stop == -1:
                break
            block = data[start : stop + len(footer)]
            try:
                return serialization.load_pem_private_key(block, password=None)
            except (ValueError, TypeError) as exc:
                raise IdentityError(f"{source}: the private key cannot be read ({exc})") from None
        start = data.find(b"-----BEGIN ", start + 1)
    raise IdentityError(f"{source}: holds no unencrypted PEM private key")


def read_identity_file(path: Path) -> IdentityFile:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IdentityError(f"{path}: cannot read it ({exc.strerror})") from None
    return parse_identity(data, str(path))


def read_own_identity(
    path: Path, role: Role, name: str | None = None, cluster: str | None = None
) -> IdentityFile:
    """A component's own identity file, which must name its role (and, for an agent, its
    host and cluster); IdentityError naming what it holds instead."""
    held = read_identity_file(path)
    mine = held.identity
    if mine.role is not role or (name is not None and mine.name != name):
        wanted = f"the {role.value} identity" + (
            f" {name!r}" if name is not None and role is not Role.MANAGER else ""
        )
        raise IdentityError(f"{path} holds the {mine.describe()}, not {wanted}")
    if role is Role.AGENT and mine.cluster != cluster:
        names = f"cluster {mine.cluster}" if mine.cluster else "no cluster"
        meant = cluster or "no cluster (a standalone host)"
        raise IdentityError(f"{path} names {names} for host {name}, whose configuration says {meant}")
    return held


@functools.lru_cache(maxsize=256)
def _identity_of_pem(pem: bytes) -> PeerIdentity:
    return identity_of(x509.load_pem_x509_certificate(pem))


def peer_identity(context: grpc.aio.ServicerContext) -> PeerIdentity | None:
    """Who made this call, from the certificate TLS verified; None on a plaintext server."""
    properties = context.auth_context()
    certificates = properties.get("x509_pem_cert")
    if not certificates:
        return None
    try:
        return _identity_of_pem(certificates[0])
    except (IdentityError, ValueError):
        return None


def aio_channel(
    address: str, identity: IdentityFile | None, peer: str, options: list[tuple[str, Any]] | None = None
) -> grpc.aio.Channel:
    """An asyncio channel to the server named `peer` (MANAGER_NAME or a host's name):
    mutual TLS with `identity`, plaintext without one."""
    options = list(options or [])
    if identity is None:
        return grpc.aio.insecure_channel(address, options=options)
    return grpc.aio.secure_channel(
        address, identity.channel_credentials(), options=options + expect_peer(peer)
    )


def sync_channel(
    address: str, identity: IdentityFile | None, peer: str, options: list[tuple[str, Any]] | None = None
) -> grpc.Channel:
    """As aio_channel, for blocking callers (the CLI)."""
    options = list(options or [])
    if identity is None:
        return grpc.insecure_channel(address, options=options)
    return grpc.secure_channel(address, identity.channel_credentials(), options=options + expect_peer(peer))
