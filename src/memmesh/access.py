"""Agents and API keys: who may call a memmesh server, and as whom.

A key is ``mm_<id>_<secret>``: the id (12 hex characters) finds the row and doubles as the
prefix shown by ``memmesh keys list``; the secret is 256 random bits of which the store
keeps only the sha256. Because the secret is high-entropy a plain hash is enough (no slow
KDF is needed against guessing), and looking the row up by id then comparing digests with
:func:`hmac.compare_digest` keeps the check constant-time in the secret.

The rules (which roles and patterns are valid, what a caller may grant, when a server
needs a key) live here and are reached through the service, so the CLI, HTTP and MCP faces
all apply the same ones. Nothing here checks who is asking; the service does that first.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from typing import get_args

from memmesh.clock import Clock
from memmesh.errors import AuthError, ConflictError, ForbiddenError, InvalidInputError, NotFoundError
from memmesh.model import (
    LOCAL_PRINCIPAL,
    Agent,
    ApiKey,
    CreatedKey,
    Principal,
    Role,
    StoredApiKey,
    normalize_namespace,
)
from memmesh.store.base import KEYS_REQUIRED_META, Store

KEY_SCHEME = "mm"
AGENT_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}")  # with fullmatch: "$" would accept a trailing newline
ROLES: tuple[str, ...] = get_args(Role)
_DUMMY_HASH = hashlib.sha256(b"memmesh: no such key").hexdigest()


def hash_secret(secret: str) -> str:
    """The sha256 hex digest the store keeps in place of a key's secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def close_copy(target: Store, keys: int) -> None:
    """Mark ``target``, a copy of a store that held ``keys`` key rows, as requiring keys from
    the start (before any memory is written to it; nothing when ``keys`` is 0)."""
    if keys:
        with target.write() as tx:
            tx.set_meta(KEYS_REQUIRED_META, str(keys))


def generate_key() -> tuple[str, str, str]:
    """A fresh ``(key_id, secret, full key text)``."""
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return key_id, secret, f"{KEY_SCHEME}_{key_id}_{secret}"


def split_key(text: str) -> tuple[str, str] | None:
    """``(key_id, secret)`` from a key's text, or None when it is not shaped like a memmesh key."""
    scheme, _, rest = text.strip().partition("_")
    key_id, _, secret = rest.partition("_")
    if scheme != KEY_SCHEME or not key_id or not secret or len(text) > 256:
        return None
    return key_id, secret


def check_role(role: str) -> Role:
    if role not in ROLES:
        raise InvalidInputError(f"role {role!r} is unknown: use one of {', '.join(ROLES)}", usage=True, field="role")
    return role  # type: ignore[return-value]


def check_agent_id(agent_id: str) -> str:
    if not isinstance(agent_id, str) or not AGENT_ID.fullmatch(agent_id.strip()):
        raise InvalidInputError(
            f"agent_id {agent_id!r} is invalid: use 1-128 characters of ASCII letters, digits and . _ : @ -", field="agent_id"
        )
    return agent_id.strip()


def normalize_patterns(patterns: Sequence[str] | str | None) -> list[str]:
    """Namespace patterns: ``*`` (everything), ``team`` or ``team/*`` (team and below it)."""
    if patterns is None:
        return ["*"]
    if isinstance(patterns, str):
        patterns = [p for p in patterns.split(",")]
    found: dict[str, None] = {}
    for raw in patterns:
        pattern = raw.strip() if isinstance(raw, str) else raw
        if pattern == "*":
            return ["*"]
        if not isinstance(pattern, str) or not pattern:
            raise InvalidInputError(f"namespace pattern {raw!r} is empty: use '*', 'team' or 'team/*'")
        root = pattern.removesuffix("/*")
        try:
            normalize_namespace(root)
        except InvalidInputError as exc:
            raise InvalidInputError(f"namespace pattern {raw!r}: {exc.message}") from None
        found[pattern] = None
    if not found:
        raise InvalidInputError("give at least one namespace pattern, e.g. '*' or 'team/*'")
    return list(found)


def check_grant(granter: Principal, role: Role, patterns: list[str]) -> None:
    """A caller may only hand out rights it has itself: its role or less, inside its namespaces."""
    if not granter.has_role(role):
        raise ForbiddenError(f"a {granter.role} may not grant the {role} role")
    if granter.prefixes() is None:
        return
    grantee = Principal(role=role, namespaces=patterns).prefixes()
    if grantee is None or not all(granter.covers(root) for root in grantee):
        raise ForbiddenError(f"namespaces {', '.join(patterns)} reach outside yours ({', '.join(granter.namespaces)})")


def check_peer_scope(role: Role, patterns: list[str]) -> None:
    """A peer key replicates every namespace: one limited to some would be refused by every
    sync route, so it is refused when it is made, with what to do instead."""
    if role == "peer" and Principal(role=role, namespaces=patterns).prefixes() is not None:
        raise InvalidInputError(
            f"a peer key replicates every namespace: it cannot be limited to {', '.join(patterns)}; "
            "leave --namespace out (or give '*'), which needs an admin key for every namespace"
        )


def manages(admin: Principal, patterns: Sequence[str]) -> bool:
    """True when every namespace pattern lies inside the admin's own namespaces, so the admin
    may see and manage a key or agent holding them (an ``a/*`` admin never manages ``*``)."""
    if admin.prefixes() is None:
        return True
    roots = Principal(namespaces=list(patterns)).prefixes()
    return roots is not None and all(admin.covers(root) for root in roots)


def check_agent_owner(granter: Principal, existing: Agent | None) -> None:
    """A scoped admin may not take over an agent id registered with namespaces outside its own
    (re-registering it or minting it a key would let it act, and write, as that agent)."""
    if existing is not None and not manages(granter, existing.namespaces):
        raise ForbiddenError(f"agent id {existing.agent_id!r} is managed outside your namespaces; choose another agent id")


def key_creators(store: Store, key_id: str) -> list[ApiKey]:
    """The keys that made ``key_id``, nearest first: its creator, that key's creator, and so on
    up to a key the local caller made (or one made before keys recorded their creator).

    Revoked keys count (keys are never deleted, so a chain is never cut): a revoke ends a
    key's use, not its responsibility for the keys it minted."""
    chain: list[ApiKey] = []
    seen = {key_id}
    key = store.api_key(key_id)
    while key is not None and key.created_by is not None and key.created_by not in seen:
        seen.add(key.created_by)
        key = store.api_key(key.created_by)
        if key is not None:
            chain.append(ApiKey(**key.model_dump(exclude={"key_hash"})))
    return chain


OPEN_HINT = (
    "create a key on the server's machine with `memmesh keys create --agent NAME --role admin` "
    "(same --db or data directory), then send 'Authorization: Bearer <key>'"
)


def check_still_keyed(
    store: Store, principal: Principal, *, since: str = "it was revoked while this call waited, and nothing was handed over"
) -> None:
    """Refuse (401) a caller whose API key was revoked after it was authenticated.

    A request is authenticated when it arrives; a call that then waits (a long-poll of the
    bus) asks again before it hands anything over, so a key revoked while its poll waited
    receives nothing more (no message, no task lease); work queued under a key (a background
    extraction) asks before it writes, so nothing lands under a key revoked meanwhile
    (``since`` says what was left undone). Callers without a key pass."""
    if principal.key_id is None:
        return
    stored = store.api_key(principal.key_id)
    if stored is None or stored.revoked_at is not None:
        raise AuthError(f"invalid or revoked API key: {since}")


class Access:
    """Agents and keys over a store; the service authorises the caller before each call."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def register_agent(
        self, agent_id: str, display_name: str | None, role: str, namespaces: Sequence[str] | str | None, granter: Principal
    ) -> Agent:
        """Create or update an agent (its created_at survives updates)."""
        agent_id = check_agent_id(agent_id)
        checked_role = check_role(role)
        patterns = normalize_patterns(namespaces)
        check_grant(granter, checked_role, patterns)
        name = (display_name or "").strip() or agent_id
        if len(name) > 256:
            raise InvalidInputError(f"display name is {len(name)} characters; the limit is 256")
        now = self.clock()
        with self.store.write() as tx:
            existing = tx.get_agent(agent_id)
            check_agent_owner(granter, existing)
            agent = Agent(
                agent_id=agent_id,
                display_name=name,
                role=checked_role,
                namespaces=patterns,
                created_at=existing.created_at if existing else now,
                updated_at=now,
            )
            tx.put_agent(agent)
        return agent

    def _closed_message(self) -> str:
        if self.store.has_api_keys():
            return "this server requires an API key: send 'Authorization: Bearer <key>' (create one with `memmesh keys create`)"
        return f"this server requires an API key and every key has been revoked: {OPEN_HINT}"

    def agents(self) -> list[Agent]:
        return self.store.agents()

    def create_key(self, agent_id: str, role: str, namespaces: Sequence[str] | str | None, granter: Principal) -> CreatedKey:
        """A new key for an agent (registered on the way if it is new); the text is returned once."""
        agent_id = check_agent_id(agent_id)
        checked_role = check_role(role)
        patterns = normalize_patterns(namespaces)
        check_grant(granter, checked_role, patterns)
        check_peer_scope(checked_role, patterns)
        key_id, secret, text = generate_key()
        now = self.clock()
        stored = StoredApiKey(
            id=key_id,
            agent_id=agent_id,
            role=checked_role,
            namespaces=patterns,
            created_at=now,
            created_by=granter.key_id,
            key_hash=hash_secret(secret),
        )
        with self.store.write() as tx:
            existing = tx.get_agent(agent_id)
            check_agent_owner(granter, existing)
            if existing is None:
                tx.put_agent(
                    Agent(agent_id=agent_id, display_name=agent_id, role=checked_role, namespaces=patterns, created_at=now, updated_at=now)
                )
            tx.insert_api_key(stored)
        return CreatedKey(**stored.model_dump(exclude={"key_hash"}), key=text)

    def keys(self, include_revoked: bool = False) -> list[ApiKey]:
        return self.store.api_keys(include_revoked)

    def revoke_key(self, key_id: str, granter: Principal) -> ApiKey:
        """Revoke a key at once (later requests with it get 401). Revoking it again is refused
        (409, exit 1) with when it was revoked, so a typo'd id cannot pass for success.

        A whole key (``mm_<id>_<secret>``, as pasted from where it leaked) is taken by its id
        and its secret is never repeated back, in an answer or an error. A key outside the
        granter's namespaces answers exactly like a key that does not exist."""
        key_id = key_id.strip() if isinstance(key_id, str) else ""
        whole = split_key(key_id)
        if whole is not None:
            key_id = whole[0]
        found = self.store.api_key(key_id) if key_id else None
        if found is None or not manages(granter, found.namespaces):
            raise NotFoundError(f"no API key with id {key_id!r}", use={"keys_list": "to see the key ids"})
        if found.revoked_at is not None:
            raise ConflictError(f"API key {key_id} was already revoked at {found.revoked_at.isoformat(timespec='seconds')}")
        with self.store.write() as tx:
            tx.revoke_api_key(key_id, self.clock())
        found = self.store.api_key(key_id)
        assert found is not None  # keys are never deleted, only revoked
        return ApiKey(**found.model_dump(exclude={"key_hash"}))

    def authenticate(self, token: str | None, *, require: bool = False) -> Principal:
        """The caller a bearer token stands for.

        No token is fine only while the server is open: ``require`` is false (the service
        sets it for ``--require-auth``, a network bind, and once any key was ever created).
        A token is always checked, even on an open server, so a client with a wrong or
        revoked key learns it at once instead of silently acting as admin. With every key
        revoked the server stays closed and the 401 says how to open it again.
        """
        if token is None or not token.strip():
            if require:
                raise AuthError(self._closed_message())
            return LOCAL_PRINCIPAL
        parts = split_key(token)
        stored = self.store.api_key(parts[0]) if parts else None
        expected = stored.key_hash if stored is not None else _DUMMY_HASH
        matches = hmac.compare_digest(expected, hash_secret(parts[1] if parts else token))
        if stored is None or not matches or stored.revoked_at is not None:
            closed_for_good = require and not self.store.has_api_keys()
            raise AuthError("invalid or revoked API key" + (f"; {self._closed_message()}" if closed_for_good else ""))
        return stored.principal()

    def authenticate_key_id(self, key_id: str) -> Principal:
        """The caller of a key proved earlier, known now only by its id (a web login keeps
        the id, never the secret): the key must still be active, so a revoke ends its use
        at the next request."""
        stored = self.store.api_key(key_id)
        if stored is None or stored.revoked_at is not None:
            raise AuthError("invalid or revoked API key: log in again with an active key")
        return stored.principal()
