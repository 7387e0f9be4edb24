"""mTLS between mesh nodes (issue 15): real ``memmesh serve`` processes on 127.0.0.1 with
certificates made by ``memmesh certs init`` in tmp_path.

What must hold: an allowlisted certificate syncs; a certificate from another CA fails the
TLS handshake; a certificate of the right CA that is not on the allowlist (or no
certificate) gets 403 on every sync route and cannot change the store; plain HTTP to a TLS
port is refused; a private key others can read stops the start with the chmod that fixes it.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.federation.mesh_support import Node, wait_for
from tests.http.http_support import server_env

from memmesh import ConfigError
from memmesh.config import load_settings
from memmesh.interfaces.client import Client

SETTLE_S = 30
CLI = [sys.executable, "-m", "memmesh.interfaces.cli.app"]


def certs_init(tmp_path: Path, directory: Path, nodes: str, *extra: str) -> dict[str, Any]:
    out = subprocess.run(
        [*CLI, "certs", "init", "--dir", str(directory), "--nodes", nodes, "--json", *extra],
        env=server_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def tls_context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None and key is not None:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


class TLSNode(Node):
    """A node serving https; ``ctx`` is how the test itself connects (CA + a client cert)."""

    def __init__(self, tmp_path: Path, name: str, certs: Path, client: str | None = None) -> None:
        super().__init__(tmp_path, name)
        self.url = f"https://127.0.0.1:{self.port}"
        self.certs = certs
        who = client or name
        self.ctx = tls_context(certs / "ca.pem", certs / f"{who}.pem", certs / f"{who}.key")

    def tls_args(self, ca_for_peers: Path | None = None) -> list[str]:
        c = self.certs
        return [
            "--tls-cert", str(c / f"{self.name}.pem"), "--tls-key", str(c / f"{self.name}.key"),
            "--tls-client-ca", str(c / "ca.pem"), "--mtls-allowlist", str(c / "allowlist.txt"),
            "--quorum-client-cert", str(c / f"{self.name}.pem"), "--quorum-client-key", str(c / f"{self.name}.key"),
            "--quorum-client-ca", str(ca_for_peers or c / "ca.pem"),
        ]  # fmt: skip

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1, verify=self.ctx).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not become ready: {self.log.read_text()[-3000:]}")

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("timeout", 15)
        kwargs.setdefault("verify", self.ctx)
        return httpx.request(method, self.url + path, **kwargs)


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    directory = tmp_path / "certs"
    certs_init(tmp_path, directory, "node-a,node-b,node-c")
    return directory


def tls_pair(tmp_path: Path, certs: Path, *, b_trusts: Path | None = None) -> tuple[TLSNode, TLSNode]:
    a, b = TLSNode(tmp_path, "node-a", certs), TLSNode(tmp_path, "node-b", certs)
    a.args = ["--peers", b.url, "--catchup-interval-secs", "1", *a.tls_args()]
    b.args = ["--peers", a.url, "--catchup-interval-secs", "1", *b.tls_args(b_trusts)]
    for node in (a, b):
        node.start(wait=False)
    for node in (a, b):
        node.wait_ready()
    return a, b


def test_two_nodes_replicate_over_mtls_with_allowlisted_certificates(tmp_path: Path, certs: Path) -> None:
    a, b = tls_pair(tmp_path, certs)
    try:
        wait_for(lambda: all(p.get("node_id") for n in (a, b) for p in n.status()["peers"]), SETTLE_S, "peers identified over mTLS")
        r = a.call("POST", "/api/v1/memories", json={"content": "deploys happen on Tuesdays", "namespace": "ops"})
        assert r.status_code == 201, r.text
        r2 = b.call("POST", "/api/v1/memories", json={"content": "the on-call rota lives in the wiki", "namespace": "ops"})
        assert r2.status_code == 201, r2.text
        wanted = {r.json()["id"], r2.json()["id"]}
        wait_for(lambda: a.ids() == wanted and b.ids() == wanted, SETTLE_S, "both writes on both nodes")
        assert a.state() == b.state()
        wait_for(  # a change received from b is forwarded on the next push round, not at once
            lambda: all(p["outbox_changes"] == 0 and not p.get("last_error") for p in a.status()["peers"]), SETTLE_S, "outboxes empty"
        )
    finally:
        a.stop()
        b.stop()


def test_unknown_or_unlisted_certificates_never_reach_the_sync_routes(tmp_path: Path, certs: Path) -> None:
    rogue_dir = tmp_path / "rogue"
    certs_init(tmp_path, rogue_dir, "node-a")  # a second CA, even reusing a listed node's name
    allowlist = certs / "allowlist.txt"
    listed = [line for line in allowlist.read_text().splitlines() if "node-c" not in line]
    allowlist.write_text("\n".join(listed) + "\n")  # node-c: right CA, not on the list
    a = TLSNode(tmp_path, "node-a", certs).start(*TLSNode(tmp_path, "node-a", certs).tls_args())
    try:
        before = a.call("POST", "/api/v1/memories", json={"content": "only this", "namespace": "ops"})
        assert before.status_code == 201
        hello = a.call("GET", "/api/v1/sync/hello")
        assert hello.status_code == 200 and hello.json()["node"] == "node-a"  # an allowlisted cert passes

        batch = {"node": "node-b", "since": 0, "upto": 1, "items": []}
        # another CA's certificate: the TLS handshake fails, no HTTP is ever spoken
        rogue = tls_context(certs / "ca.pem", rogue_dir / "node-a.pem", rogue_dir / "node-a.key")
        with pytest.raises(httpx.HTTPError):
            a.call("POST", "/api/v1/sync/push", json=batch, verify=rogue)

        # the right CA but not on the allowlist, or no certificate at all: 403 on every sync route
        unlisted = tls_context(certs / "ca.pem", certs / "node-c.pem", certs / "node-c.key")
        anonymous = tls_context(certs / "ca.pem")
        for ctx in (unlisted, anonymous):
            for method, path in [
                ("GET", "/api/v1/sync/hello"),
                ("POST", "/api/v1/sync/push"),
                ("GET", "/api/v1/sync/since?peer=node-b&since=0"),
                ("GET", "/api/v1/sync/status"),
                ("POST", "//api/v1/sync/push"),
                ("POST", "/api/v1/sync/push/"),
            ]:
                r = a.call(method, path, verify=ctx, json=batch if method == "POST" else None)
                assert r.status_code == 403, (path, r.text)
                assert r.json()["error"]["code"] == "peer_certificate_required"
                assert "allowlist" in r.json()["error"]["message"]
            # the ordinary API is not the allowlist's business: API keys (none here) decide
            assert a.call("GET", "/api/v1/memories", verify=ctx).status_code == 200
        assert a.call("POST", "/api/v1/sync/push", verify=unlisted, json=batch).json()["error"]["details"]["fingerprint"]
        assert a.ids() == {before.json()["id"]}
        assert "not on the mTLS allowlist" in a.log.read_text()

        # the allowlist is re-read when it changes: listing node-c lets it in, no restart
        fingerprint = subprocess.run(
            [*CLI, "certs", "fingerprint", str(certs / "node-c.pem")], capture_output=True, text=True, env=server_env(tmp_path)
        ).stdout.strip()
        with allowlist.open("a") as handle:
            handle.write(fingerprint.replace(":", "").lower() + "  # node-c, without colons\n")
        wait_for(lambda: a.call("GET", "/api/v1/sync/hello", verify=unlisted).status_code == 200, 10, "node-c allowed")
        # a bad edit while serving keeps the last good list: neither open to all nor closed to all
        good = allowlist.read_text()
        allowlist.write_text(good + "this is not a fingerprint\n")
        time.sleep(0.05)
        assert a.call("GET", "/api/v1/sync/hello", verify=unlisted).status_code == 200
        assert a.call("GET", "/api/v1/sync/hello", verify=anonymous).status_code == 403
        assert "keeping the last good list" in a.log.read_text()
        # removing a node's line cuts it off without a restart
        allowlist.write_text("\n".join(line for line in good.splitlines() if "node-c" not in line) + "\n")
        wait_for(lambda: a.call("GET", "/api/v1/sync/hello", verify=unlisted).status_code == 403, 10, "node-c cut off")
    finally:
        a.stop()


def test_a_peer_whose_server_certificate_does_not_chain_to_our_ca_is_not_trusted(tmp_path: Path, certs: Path) -> None:
    other = tmp_path / "other"
    certs_init(tmp_path, other, "x")
    a, b = tls_pair(tmp_path, certs, b_trusts=other / "ca.pem")  # b verifies a against the wrong CA
    try:
        wait_for(lambda: "CERTIFICATE_VERIFY_FAILED" in (b.status()["peers"][0].get("last_error") or ""), SETTLE_S, "b refuses a's cert")
        r = b.call("POST", "/api/v1/memories", json={"content": "must not leave b", "namespace": "ops"})
        assert r.status_code == 201
        time.sleep(2)
        assert r.json()["id"] not in a.ids()
        assert "CERTIFICATE_VERIFY_FAILED" in b.status()["peers"][0]["last_error"]
    finally:
        a.stop()
        b.stop()


def test_cluster_verify_and_repair_take_the_client_certificate_flags_and_say_what_is_missing(tmp_path: Path, certs: Path) -> None:
    a, b = tls_pair(tmp_path, certs)

    def cluster(*args: str) -> subprocess.CompletedProcess[str]:
        command = [*CLI, "--db", str(a.db), "cluster", *args]
        return subprocess.run(command, env=server_env(tmp_path), capture_output=True, text=True, timeout=120)

    try:
        r = a.call("POST", "/api/v1/memories", json={"content": "deploys happen on Tuesdays", "namespace": "ops"})
        assert r.status_code == 201, r.text
        digest = "/api/v1/sync/digest"
        wait_for(lambda: a.call("GET", digest).json()["digest"] == b.call("GET", digest).json()["digest"], SETTLE_S, "equal digests")
        bare = cluster("verify", "--peers", b.url, "--json")  # no client certificate, no CA: b's certificate is not trusted
        assert bare.returncode == 1
        why = json.loads(bare.stdout)["errors"][b.url]
        assert "CERTIFICATE_VERIFY_FAILED" in why and "--quorum-client-cert, --quorum-client-key and --quorum-client-ca" in why, why
        assert "MEMMESH_TLS_QUORUM_CLIENT_CERT_FILE" in why
        flags = a.tls_args()[-6:]
        assert flags[0] == "--quorum-client-cert"
        verified = cluster("verify", "--peers", b.url, "--json", *flags)
        assert verified.returncode == 0 and json.loads(verified.stdout)["consistent"] is True, verified.stdout + verified.stderr
        refused = cluster("repair", "--peers", b.url)
        assert refused.returncode == 1 and "--quorum-client-ca" in refused.stderr, refused.stderr
        repaired = cluster("repair", "--peers", b.url, "--json", *flags)
        assert repaired.returncode == 0, repaired.stderr
        assert json.loads(repaired.stdout)[0]["memories"] == 0
    finally:
        a.stop()
        b.stop()


def test_plain_http_to_a_tls_port_is_refused_and_agents_use_https_without_a_certificate(
    tmp_path: Path, certs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = TLSNode(tmp_path, "node-a", certs)
    a.start(*a.tls_args())
    try:
        plain = a.url.replace("https://", "http://")
        with pytest.raises(httpx.HTTPError):
            httpx.post(plain + "/api/v1/memories", json={"content": "in clear text", "namespace": "ops"}, timeout=5)
        with pytest.raises(httpx.HTTPError):
            httpx.get(plain + "/api/v1/sync/hello", timeout=5)
        assert a.ids() == set()
        assert a.call("GET", "/healthz").status_code == 200  # still serving https

        # an agent: the Python Client over https, trusting the CA, with no client certificate
        monkeypatch.setenv("SSL_CERT_FILE", str(certs / "ca.pem"))
        with Client(a.url, retries=0) as client:
            added = client.add("agents need no certificate", namespace="ops")
            assert client.get(added.id).content == "agents need no certificate"
        assert a.ids() == {added.id}
    finally:
        a.stop()


def serve_fails(tmp_path: Path, *args: str) -> str:
    out = subprocess.run(
        [*CLI, "serve", "--db", str(tmp_path / "x.db"), "--port", "0", *args],  # a port of its own: tests beside it use theirs
        env=server_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0, out.stdout
    return out.stderr


def test_a_tls_mistake_is_said_before_the_port_is_taken(tmp_path: Path, certs: Path) -> None:
    """serve binds its socket before opening the store; the TLS files were checked after
    that, so with the port taken (another server, a test beside it) the TLS mistake was
    hidden behind "port … is already in use"."""
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        out = subprocess.run(
            [
                *CLI,
                "serve",
                "--db",
                str(tmp_path / "x.db"),
                "--port",
                str(port),
                "--tls-cert",
                str(certs / "missing.pem"),
                "--tls-key",
                str(certs / "node-a.key"),
            ],
            env=server_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert out.returncode != 0 and "does not exist" in out.stderr and "already in use" not in out.stderr, out.stderr


def test_a_key_file_others_can_read_is_refused_at_start_with_the_chmod(tmp_path: Path, certs: Path) -> None:
    node = TLSNode(tmp_path, "node-a", certs)
    key = certs / "node-a.key"
    key.chmod(0o644)
    err = serve_fails(tmp_path, *node.tls_args())
    assert f"chmod 600 {key}" in err and "0644" in err
    key.chmod(0o400)  # owner read-only is fine for the server key; now the client key
    client_key = certs / "node-b.key"
    client_key.chmod(0o640)
    args = node.tls_args()
    args[args.index("--quorum-client-key") + 1] = str(client_key)
    err = serve_fails(tmp_path, "--peers", "https://127.0.0.1:1", *args)
    assert f"chmod 600 {client_key}" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tls-cert", "{c}/node-a.pem"], "both --tls-cert and --tls-key"),
        (["--mtls-allowlist", "{c}/allowlist.txt"], "need --tls-cert and --tls-key"),
        (["--tls-cert", "{c}/node-a.pem", "--tls-key", "{c}/node-a.key", "--mtls-allowlist", "{c}/allowlist.txt"], "--tls-client-ca"),
        (["--tls-cert", "{c}/node-a.pem", "--tls-key", "{c}/node-a.key", "--tls-client-ca", "{c}/ca.pem",
          "--mtls-allowlist", "{c}/empty.txt"], "lists no fingerprints"),
        (["--tls-cert", "{c}/node-a.pem", "--tls-key", "{c}/node-a.key", "--tls-client-ca", "{c}/ca.pem",
          "--mtls-allowlist", "{c}/bad.txt"], "bad.txt line 2"),
        (["--tls-cert", "{c}/node-a.pem", "--tls-key", "{c}/node-b.key"], "cannot load"),
        (["--tls-cert", "{c}/missing.pem", "--tls-key", "{c}/node-a.key"], "does not exist"),
        (["--peers", "http://127.0.0.1:1", "--quorum-client-ca", "{c}/ca.pem"], "use https://"),
        (["--peers", "https://127.0.0.1:1", "--quorum-client-cert", "{c}/node-a.pem"], "--quorum-client-key"),
    ],
)  # fmt: skip
def test_bad_tls_settings_stop_the_start_with_what_to_fix(tmp_path: Path, certs: Path, args: list[str], message: str) -> None:
    (certs / "empty.txt").write_text("# nothing yet\n")
    (certs / "bad.txt").write_text("# ok\nnot-a-fingerprint\n")
    err = serve_fails(tmp_path, *[a.format(c=certs) for a in args])
    assert message in err, err


def test_certs_init_writes_owner_only_keys_an_allowlist_and_adds_nodes_to_the_same_ca(tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    made = certs_init(tmp_path, directory, "n1,n2", "--hosts", "127.0.0.1,mesh.example")
    assert made["ca_created"] is True
    for path in [made["ca_key"], *(n["key"] for n in made["nodes"])]:
        assert Path(path).stat().st_mode & 0o777 == 0o600
    listed = (directory / "allowlist.txt").read_text()
    for node in made["nodes"]:
        out = subprocess.run([*CLI, "certs", "fingerprint", node["cert"]], capture_output=True, text=True, env=server_env(tmp_path))
        assert out.stdout.strip() == node["fingerprint"] and node["fingerprint"] in listed
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(Path(made["nodes"][0]["cert"]).read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert sans.get_values_for_type(x509.DNSName) == ["mesh.example"]

    more = certs_init(tmp_path, directory, "n3")  # a later node: same CA, appended to the list
    assert more["ca_created"] is False
    assert more["nodes"][0]["fingerprint"] in (directory / "allowlist.txt").read_text()
    ca = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
    n3 = x509.load_pem_x509_certificate(Path(more["nodes"][0]["cert"]).read_bytes())
    n3.verify_directly_issued_by(ca)

    again = subprocess.run(
        [*CLI, "certs", "init", "--dir", str(directory), "--nodes", "n1"], capture_output=True, text=True, env=server_env(tmp_path)
    )
    assert again.returncode != 0 and "never overwrites" in again.stderr
    bad = subprocess.run([*CLI, "certs", "fingerprint", made["ca_key"]], capture_output=True, text=True, env=server_env(tmp_path))
    assert bad.returncode != 0 and "not a PEM or DER X.509 certificate" in bad.stderr


def test_tls_settings_follow_flag_over_env_over_file(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[tls]\ncert_file = "/file/cert.pem"\nkey_file = "/file/key.pem"\nmtls_allowlist = "/file/allow.txt"\n')
    env = {"MEMMESH_TLS_KEY_FILE": "/env/key.pem", "MEMMESH_TLS_MTLS_ALLOWLIST": "/env/allow.txt"}
    tls = load_settings(config, overrides={"tls": {"mtls_allowlist": "/flag/allow.txt"}}, env=env).tls
    assert (str(tls.cert_file), str(tls.key_file), str(tls.mtls_allowlist)) == ("/file/cert.pem", "/env/key.pem", "/flag/allow.txt")
    config.write_text('[tls]\nkey = "/inline"\n')
    with pytest.raises(ConfigError, match=r"unknown key 'tls\.key'|inline secret"):
        load_settings(config, env={})


def test_every_worker_process_keeps_unlisted_certificates_off_the_sync_routes(tmp_path: Path, certs: Path) -> None:
    """With --workers 2 uvicorn spawns processes: the TLS context and the allowlist check must
    reach each of them, not only the parent."""
    a = TLSNode(tmp_path, "node-a", certs)
    a.start("--workers", "2", *a.tls_args())
    try:
        anonymous = tls_context(certs / "ca.pem")
        for _ in range(8):  # new connections, spread over both workers
            assert a.call("GET", "/api/v1/sync/hello", verify=anonymous).status_code == 403
            assert a.call("GET", "/api/v1/sync/hello").status_code == 200
        with pytest.raises(httpx.HTTPError):
            httpx.get(a.url.replace("https://", "http://") + "/healthz", timeout=5)
    finally:
        a.stop()


def test_require_client_cert_refuses_every_connection_without_one(tmp_path: Path, certs: Path) -> None:
    a = TLSNode(tmp_path, "node-a", certs)
    a.start("--tls-require-client-cert", *a.tls_args())
    try:
        with pytest.raises(httpx.HTTPError):
            a.call("POST", "/api/v1/memories", json={"content": "no certificate", "namespace": "ops"}, verify=tls_context(certs / "ca.pem"))
        signed = tls_context(certs / "ca.pem", certs / "node-c.pem", certs / "node-c.key")
        assert a.call("GET", "/healthz", verify=signed).status_code == 200
        assert a.ids() == set()
    finally:
        a.stop()


def test_a_silent_tls_connection_is_cut_at_the_request_timeout_with_an_allowlist(tmp_path: Path, certs: Path) -> None:
    # With an mTLS allowlist the server swapped in its certificate-checking protocol, which
    # had no read deadline: a client that finished the handshake and then sent nothing (or
    # one byte a second) kept its connection, and its file descriptor, for good.
    a = TLSNode(tmp_path, "node-a", certs)
    a.env = {"MEMMESH_SERVER_REQUEST_TIMEOUT_SECS": "2"}
    a.start(*a.tls_args())
    try:
        raw = socket.create_connection(("127.0.0.1", a.port), timeout=30)
        started = time.monotonic()
        with tls_context(certs / "ca.pem").wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"GET /healthz HTTP/1.1\r\n")  # a start, then nothing at all
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
        cut_after = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 408 Request Timeout"), answer[:80]
        assert 1.5 <= cut_after <= 10, f"cut after {cut_after:.1f}s"  # without the deadline: the 30 s socket timeout
        assert a.call("GET", "/healthz").status_code == 200
    finally:
        a.stop()
