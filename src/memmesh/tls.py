"""TLS for the mesh: key-file checks, fingerprint allowlists, SSL contexts and a small CA.

Peers authenticate with mutual TLS (docs/federation.md). Everything that decides *whether* a
certificate, a key file or an allowlist is acceptable lives here, once; the HTTP server
(``interfaces/http/tls_guard.py``), the peer client factory (``federation/peers.py``) and
``memmesh certs`` only call it.

- A fingerprint is the SHA-256 of a certificate's DER encoding, written like
  ``openssl x509 -fingerprint -sha256`` (``AB:CD:…``); allowlists accept it with or without
  colons, in either case, one per line, ``#`` comments.
- Private keys must be owner-only (no group/other permission bits): a world-readable key
  is as good as published, so a server or client refuses to start and prints the chmod.
- :func:`init_certs` makes an EC P-256 CA and one certificate per node that serves both as
  the node's server certificate and as its client certificate towards its peers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import logging
import os
import ssl
import stat
from dataclasses import dataclass, field
from pathlib import Path

from memmesh.errors import ConfigError

log = logging.getLogger("memmesh.tls")

CERT_DAYS = 825
"""Validity of node certificates made by ``certs init`` (the CA gets ten years)."""


# --- files ---------------------------------------------------------------------------------


def check_key_file(path: Path, what: str) -> Path:
    """Refuse a private key that is missing or that anyone but its owner may read or write.

    Why: a key readable by the group or others lets any local user impersonate this node to
    the whole mesh. The message carries the exact ``chmod`` that fixes it.
    """
    path = Path(path).expanduser()
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"{what} {path}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise ConfigError(f"{what} {path} is not a regular file")
    if mode & 0o077:
        raise ConfigError(
            f"{what} {path} has mode {stat.S_IMODE(mode):04o}: a private key must be readable by its owner only; run: chmod 600 {path}"
        )
    return path


def _check_readable(path: Path, what: str) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist or is not a file")
    return path


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` owner-only from the first byte on (never briefly world-readable)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)  # O_CREAT's mode is masked by the umask; this is not


# --- fingerprints and allowlists -----------------------------------------------------------


def fingerprint_der(der: bytes) -> str:
    """``AB:CD:…``: SHA-256 of a DER certificate, as ``openssl x509 -fingerprint -sha256``."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def normalise_fingerprint(text: str) -> str:
    """The colon form of a fingerprint given with or without colons, in either case."""
    compact = text.strip().replace(":", "").replace(" ", "").upper()
    if len(compact) != 64 or any(c not in "0123456789ABCDEF" for c in compact):
        raise ValueError("not a SHA-256 fingerprint (64 hex digits, colons optional)")
    return ":".join(compact[i : i + 2] for i in range(0, 64, 2))


def fingerprint_file(path: Path) -> str:
    """The fingerprint of the (first) certificate in a PEM or DER file."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    path = _check_readable(Path(path), "certificate")
    data = path.read_bytes()
    try:
        cert = x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data else x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise ConfigError(f"certificate {path} is not a PEM or DER X.509 certificate: {exc}") from None
    return fingerprint_der(cert.public_bytes(Encoding.DER))


def parse_allowlist(text: str, source: str) -> frozenset[str]:
    """Fingerprints of an allowlist file's text; a bad line names its number and what to fix."""
    found = set()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            found.add(normalise_fingerprint(line))
        except ValueError as exc:
            raise ConfigError(f"mTLS allowlist {source} line {number}: {exc}; get one with `memmesh certs fingerprint CERT`") from None
    return frozenset(found)


@dataclass
class Allowlist:
    """The fingerprints in an allowlist file, re-read when the file changes.

    Why re-read: removing a node's line must cut it off without restarting every server.
    A file that becomes unreadable or invalid while serving keeps the last good list (and
    the caller logs), rather than opening the mesh to everyone or to no one by accident.
    """

    path: Path
    _stamp: tuple[int, int] | None = field(default=None, repr=False)
    _fingerprints: frozenset[str] = field(default_factory=frozenset, repr=False)

    def load(self) -> frozenset[str]:
        """Read the file now; a missing, unreadable or malformed file is a ConfigError."""
        try:
            st = self.path.stat()
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"mTLS allowlist {self.path}: {getattr(exc, 'strerror', None) or exc}") from None
        self._fingerprints = parse_allowlist(text, str(self.path))
        self._stamp = (st.st_mtime_ns, st.st_size)
        return self._fingerprints

    def current(self) -> frozenset[str]:
        """The list as of the file's last good state (re-read when its mtime or size moved)."""
        problem = ""
        try:
            st: os.stat_result | None = self.path.stat()
        except OSError as exc:
            st = None
            problem = f"mTLS allowlist {self.path}: {exc.strerror}"
        stamp = (st.st_mtime_ns, st.st_size) if st is not None else (-1, -1)
        if stamp == self._stamp:
            return self._fingerprints
        if st is not None:
            try:
                return self.load()
            except ConfigError as exc:
                problem = exc.message
        self._stamp = stamp  # warn once per bad state, not on every request
        log.warning("%s; keeping the last good list (%d fingerprints)", problem, len(self._fingerprints))
        return self._fingerprints

    def allows(self, fingerprint: str | None) -> bool:
        return fingerprint is not None and fingerprint in self.current()


# --- SSL contexts --------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerTLS:
    """What the HTTP server needs: its certificate and key, and how it treats client certificates."""

    cert: Path
    key: Path
    client_ca: Path | None = None
    require_client_cert: bool = False
    allowlist: Path | None = None

    def context(self) -> ssl.SSLContext:
        """A TLS 1.2+ server context. With a client CA, client certificates are requested and,
        when presented, must chain to it (else the handshake fails); with
        ``require_client_cert`` a connection without one fails too."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(str(self.cert), str(self.key))
            if self.client_ca is not None:
                ctx.load_verify_locations(cafile=str(self.client_ca))
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"TLS: cannot load {self.cert} / {self.key} / {self.client_ca}: {exc}") from None
        if self.client_ca is not None:
            ctx.verify_mode = ssl.CERT_REQUIRED if self.require_client_cert else ssl.CERT_OPTIONAL
        return ctx

    def __call__(self, config: object, default: object) -> ssl.SSLContext:
        """uvicorn's ``ssl_context_factory`` hook (a picklable callable, for worker processes)."""
        return self.context()


def server_tls(
    cert: Path | None,
    key: Path | None,
    client_ca: Path | None = None,
    require_client_cert: bool = False,
    allowlist: Path | None = None,
    fallback_ca: Path | None = None,
) -> ServerTLS | None:
    """Check the ``[tls]`` server settings and return them, or None for plain HTTP.

    An allowlist needs a CA to verify the presented certificates against: ``client_ca``,
    else ``fallback_ca`` (the CA this node trusts for its peers' server certificates).
    """
    if cert is None and key is None:
        if client_ca or allowlist or require_client_cert:
            raise ConfigError("--tls-client-ca, --tls-require-client-cert and --mtls-allowlist need --tls-cert and --tls-key")
        return None
    if cert is None or key is None:
        raise ConfigError("TLS needs both --tls-cert and --tls-key (tls.cert_file and tls.key_file)")
    ca = client_ca or (fallback_ca if allowlist is not None else None)
    if allowlist is not None and ca is None:
        raise ConfigError(
            "--mtls-allowlist needs the CA that signed the peers' certificates: pass --tls-client-ca CA.pem (or --quorum-client-ca)"
        )
    if require_client_cert and ca is None:
        raise ConfigError("--tls-require-client-cert needs --tls-client-ca CA.pem")
    tls = ServerTLS(
        cert=_check_readable(cert, "TLS certificate"),
        key=check_key_file(key, "TLS key"),
        client_ca=_check_readable(ca, "TLS client CA") if ca is not None else None,
        require_client_cert=require_client_cert,
        allowlist=Path(allowlist).expanduser() if allowlist is not None else None,
    )
    if tls.allowlist is not None and not Allowlist(tls.allowlist).load():
        raise ConfigError(f"mTLS allowlist {tls.allowlist} lists no fingerprints: no peer could sync; add lines from allowlist.txt")
    tls.context()  # fail at start, with a clear message, rather than on the first connection
    return tls


def client_context(cert: Path | None, key: Path | None, ca: Path | None) -> ssl.SSLContext | None:
    """The SSL context for outgoing peer calls, or None (the system's default trust, no client cert).

    ``ca`` is the CA the peers' server certificates must chain to (hostnames are checked
    against their SANs); ``cert``/``key`` are this node's client certificate.
    """
    if cert is None and key is None and ca is None:
        return None
    if (cert is None) != (key is None):
        raise ConfigError("a client certificate needs both --quorum-client-cert and --quorum-client-key")
    try:
        if ca is not None:
            ctx = ssl.create_default_context(cafile=str(_check_readable(ca, "quorum client CA")))
        else:
            ctx = ssl.create_default_context()
        if cert is not None and key is not None:
            ctx.load_cert_chain(str(_check_readable(cert, "quorum client certificate")), str(check_key_file(key, "quorum client key")))
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"TLS client: cannot load {cert} / {key} / {ca}: {exc}") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def check_peer_schemes(peers: list[str], client_tls: ssl.SSLContext | None) -> None:
    """A client certificate is only ever sent over https: an http:// peer would get the
    mesh's data in clear text, so mixing them is refused rather than silently allowed."""
    if client_tls is None:
        return
    plain = [url for url in peers if url.startswith("http://")]
    if plain:
        raise ConfigError(f"peer {plain[0]} is plain http:// but a quorum client certificate/CA is set; use https:// peer URLs")


# --- a small CA ----------------------------------------------------------------------------


@dataclass
class NodeCert:
    name: str
    cert: Path
    key: Path
    fingerprint: str


@dataclass
class CertSet:
    """What ``certs init`` wrote."""

    dir: Path
    ca_cert: Path
    ca_key: Path
    ca_created: bool
    allowlist: Path
    nodes: list[NodeCert]


def _node_name_ok(name: str) -> bool:
    return bool(name) and all(c.isalnum() or c in "-_." for c in name) and not name.startswith(".")


def init_certs(directory: Path, nodes: list[str], hosts: list[str], days: int = CERT_DAYS) -> CertSet:
    """A CA (reused when ``directory`` already holds ``ca.pem``/``ca.key``) and, per node,
    ``<node>.pem``/``<node>.key``: one EC P-256 certificate for both server and client use,
    with SANs for ``hosts``. Appends the nodes' fingerprints to ``allowlist.txt``.

    Never overwrites a node's files: re-running for a new node adds it to the same CA.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    names = [n.strip() for n in nodes if n.strip()]
    if not names:
        raise ConfigError("--nodes needs at least one node name, e.g. --nodes node-a,node-b,node-c")
    bad = [n for n in names if not _node_name_ok(n)]
    if bad:
        raise ConfigError(f"node name {bad[0]!r} may only use letters, digits, '-', '_' and '.'")
    if len(set(names)) != len(names) or "ca" in names:
        raise ConfigError("node names must be distinct and not 'ca'")
    sans: list[x509.GeneralName] = []
    for host in (h.strip() for h in hosts):
        if not host:
            continue
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host.strip("[]"))))
        except ValueError:
            sans.append(x509.DNSName(host))
    if not sans:
        raise ConfigError("--hosts needs at least one host name or IP address the nodes are reached at")
    directory = Path(directory).expanduser().absolute()  # printed flags work from any directory
    directory.mkdir(parents=True, exist_ok=True)
    taken = [p for n in names for p in (directory / f"{n}.pem", directory / f"{n}.key") if p.exists()]
    if taken:
        raise ConfigError(f"{taken[0]} already exists; certs init never overwrites a node's files (pick another name or dir)")

    now = dt.datetime.now(dt.UTC)
    ca_cert_path, ca_key_path = directory / "ca.pem", directory / "ca.key"
    ca_created = not ca_cert_path.exists()
    if ca_created:
        if ca_key_path.exists():
            raise ConfigError(f"{ca_key_path} exists without ca.pem; remove it or restore ca.pem")
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "memmesh mesh CA")])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )  # key_cert_sign, crl_sign
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        _write_private(
            ca_key_path,
            ca_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        )
        ca_cert_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    else:
        check_key_file(ca_key_path, "CA key")
        ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
        loaded = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ConfigError(f"{ca_key_path} is not an EC key made by memmesh certs init")
        ca_key = loaded

    made = []
    for name in names:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, True, False, True, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
        _write_private(
            key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        made.append(NodeCert(name, cert_path, key_path, fingerprint_der(cert.public_bytes(serialization.Encoding.DER))))

    allowlist = directory / "allowlist.txt"
    with allowlist.open("a", encoding="utf-8") as handle:
        if allowlist.stat().st_size == 0:
            handle.write("# SHA-256 fingerprints of the certificates allowed to sync with this node (memmesh certs init)\n")
        for node in made:
            handle.write(f"{node.fingerprint}  # {node.name}\n")
    return CertSet(directory, ca_cert_path, ca_key_path, ca_created, allowlist, made)
