"""Talking to peer nodes over HTTP: the one place a peer connection is made.

:func:`peer_http_client` is the single httpx client factory (TLS client certificates and CA
options belong there); :class:`PeerClient` wraps the three sync routes and turns every
failure (refused connection, timeout, error status, a body that is not a sync reply) into
:class:`~memmesh.errors.PeerError`, so a peer answering garbage never reaches the store.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from memmesh.errors import PeerError
from memmesh.federation.changes import Hello, SyncBatch, SyncPage, SyncReport, parse_batch
from memmesh.federation.digest import DigestNode, DigestReport

_Model = TypeVar("_Model", bound=BaseModel)


def peer_http_client(timeout_s: float, tls: ssl.SSLContext | None = None) -> httpx.Client:
    """The HTTP client every peer call uses (one per peer: its own connection pool).

    ``tls`` (from :func:`memmesh.tls.client_context`) carries this node's client certificate
    and the CA its peers' server certificates must chain to; without it https peers are
    verified against the system's trust store and no client certificate is sent.
    """
    return httpx.Client(
        timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 2.0)),
        follow_redirects=False,
        trust_env=False,
        verify=tls if tls is not None else True,
    )


TLS_CLIENT_SETTINGS = (
    "give this node's client certificate, its key and the CA the peers' certificates chain to: "
    "--quorum-client-cert, --quorum-client-key and --quorum-client-ca (serve and the cluster commands), "
    "[tls] quorum_client_cert_file, quorum_client_key_file and quorum_client_ca_file, "
    "or MEMMESH_TLS_QUORUM_CLIENT_CERT_FILE, _KEY_FILE and _CA_FILE"
)
"""What a TLS failure towards a peer asks for: the client side of mesh TLS, in every
spelling (flags, config file, environment), since the same peer client serves ``serve``,
``sync-daemon`` and the ``cluster`` commands."""


def tls_hint(exc: BaseException) -> str:
    """``"; <what to give>"`` when ``exc`` was caused by TLS (a peer certificate this node
    does not trust, a peer that wants a client certificate), else ``""``: the bare
    CERTIFICATE_VERIFY_FAILED says nothing of the settings that fix it."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return "; " + TLS_CLIENT_SETTINGS
        seen = seen.__cause__ or seen.__context__
    return ""


def parse_peer_list(text: str | list[str] | None) -> list[str]:
    """``URL,URL,…`` (or a list) as clean base URLs; refuses anything but http(s) URLs."""
    from memmesh.errors import ConfigError

    items = text if isinstance(text, list) else (text or "").split(",")
    urls = []
    for raw in items:
        url = raw.strip().rstrip("/")
        if not url:
            continue
        parsed = httpx.URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ConfigError(f"peer {raw!r} is not an http(s) URL such as http://10.0.0.2:9077")
        urls.append(url)
    if len(set(urls)) != len(urls):
        raise ConfigError("a peer URL is listed twice in --peers")
    return urls


def read_peer_keys(path: Path | None, peers: list[str]) -> dict[str, str | None]:
    """The peer API key to send to each peer URL, from a file of ``URL KEY`` lines (or one
    ``KEY`` line used for every peer); ``#`` starts a comment. No file: no key (open peers)."""
    from memmesh.errors import ConfigError

    keys: dict[str, str | None] = dict.fromkeys(peers)
    if path is None:
        return keys
    try:
        lines = Path(path).expanduser().read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"federation.peer_key_file {path}: {exc.strerror}", field="federation.peer_key_file") from None
    default: str | None = None
    for number, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) == 1:
            default = parts[0]
        elif len(parts) == 2 and parts[0].rstrip("/") in keys:
            keys[parts[0].rstrip("/")] = parts[1]
        else:
            raise ConfigError(
                f"federation.peer_key_file {path} line {number}: expected 'KEY' or 'URL KEY' with a URL from --peers",
                field="federation.peer_key_file",
            )
    return {url: key or default for url, key in keys.items()}


@dataclass
class PeerClient:
    """One peer, reached at ``url`` with ``key`` (a ``peer`` API key of that node, or None)."""

    url: str
    key: str | None
    timeout_s: float = 5.0
    tls: ssl.SSLContext | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._http = peer_http_client(self.timeout_s, self.tls)

    def close(self) -> None:
        self._http.close()

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "User-Agent": "memmesh-peer"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        return headers

    def _call(self, method: str, path: str, *, timeout_s: float | None = None, **kwargs: Any) -> Any:
        response = self._request(method, path, timeout_s=timeout_s, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise PeerError(
                f"peer {self.url} answered {response.status_code} with a body that is not JSON", details={"peer": self.url}
            ) from None

    def _request(self, method: str, path: str, *, timeout_s: float | None = None, **kwargs: Any) -> httpx.Response:
        """The peer's answer, once it is not an error (an error status raises PeerError)."""
        try:
            response = self._http.request(
                method,
                self.url + path,
                headers=self._headers(),
                timeout=timeout_s if timeout_s is not None else httpx.USE_CLIENT_DEFAULT,
                **kwargs,
            )
        except httpx.HTTPError as exc:
            raise PeerError(
                f"peer {self.url} unreachable: {type(exc).__name__}: {exc}{tls_hint(exc)}", details={"peer": self.url}
            ) from None
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                raise PeerError(
                    f"peer {self.url} answered {response.status_code} with a body that is not JSON", details={"peer": self.url}
                ) from None
            error = body.get("error", {}) if isinstance(body, dict) else {}
            code = error.get("code", "http_error") if isinstance(error, dict) else "http_error"
            message = error.get("message", "") if isinstance(error, dict) else ""
            raise PeerError(
                f"peer {self.url} refused: {response.status_code} {code}: {message}",
                details={"peer": self.url, "status": response.status_code, "code": code},
            )
        return response

    def hello(self) -> Hello:
        body = self._call("GET", "/api/v1/sync/hello")
        try:
            return Hello.model_validate(body)
        except ValidationError:
            raise PeerError(f"peer {self.url} answered a hello that is not a memmesh node's", details={"peer": self.url}) from None

    def push(self, batch: SyncBatch, *, timeout_s: float | None = None) -> SyncReport:
        body = self._call("POST", "/api/v1/sync/push", content=batch.model_dump_json(exclude_none=True).encode(), timeout_s=timeout_s)
        try:
            return SyncReport.model_validate(body)
        except ValidationError:
            raise PeerError(
                f"peer {self.url} answered a push with something that is not a sync report", details={"peer": self.url}
            ) from None

    def since(self, node: str, since: int, limit: int, *, omit_own: bool = False) -> SyncPage:
        """One page of the peer's feed after ``since``; ``omit_own`` leaves out what ``node``
        wrote itself (see :meth:`memmesh.federation.replica.Replica.feed`). The body is parsed
        straight from its bytes by pydantic-core (one pass, no intermediate Python objects):
        a catch-up spends much of its time here."""
        params: dict[str, Any] = {"peer": node, "since": since, "limit": limit}
        if omit_own:
            params["omit_own"] = "true"
        response = self._request("GET", "/api/v1/sync/since", params=params)
        try:
            return SyncPage.model_validate_json(response.content)
        except ValidationError:
            raise PeerError(
                f"peer {self.url} answered /sync/since with something that is not a sync page", details={"peer": self.url}
            ) from None

    def digests(self) -> DigestReport:
        """The peer's per-namespace content digests."""
        return self._parsed(DigestReport, self._call("GET", "/api/v1/sync/digest"), "/sync/digest")

    def digest_node(self, namespace: str, prefix: str = "", *, leaves: bool = False) -> DigestNode:
        """One node of the peer's digest tree for ``namespace``."""
        params = {"namespace": namespace, "prefix": prefix, "leaves": "true" if leaves else "false"}
        return self._parsed(DigestNode, self._call("GET", "/api/v1/sync/digest", params=params), "/sync/digest")

    def items(self, ids: list[str]) -> SyncPage:
        """The peer's current state of the memories ``ids`` (memory or tombstone, links, conflicts)."""
        body = self._call("POST", "/api/v1/sync/items", json={"ids": ids})
        try:
            page = parse_batch(body, SyncPage)
        except Exception:
            raise PeerError(
                f"peer {self.url} answered /sync/items with something that is not a sync page", details={"peer": self.url}
            ) from None
        assert isinstance(page, SyncPage)
        return page

    def _parsed(self, model: type[_Model], body: Any, route: str) -> _Model:
        try:
            return model.model_validate(body)
        except ValidationError:
            raise PeerError(
                f"peer {self.url} answered {route} with something memmesh does not understand", details={"peer": self.url}
            ) from None
