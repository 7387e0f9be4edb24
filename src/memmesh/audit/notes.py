"""Signed checkpoints in the C2SP signed-note format, kept outside the database.

A checkpoint is the note body ``<origin>\\n<tree size>\\n<base64 root>\\n``, a blank line and
one signature line ``— <key name> <base64(key hash || Ed25519 signature)>`` (C2SP
``signed-note`` and ``tlog-checkpoint``). The key hash is the first 4 bytes of
``sha256(name || "\\n" || 0x01 || public key)``, as in Go's ``golang.org/x/mod/sumdb/note``,
so standard note tooling can check these checkpoints too.

Checkpoints go to ``<checkpoint_dir>/checkpoints.jsonl`` (append-only, one JSON object per
line, fsynced) and the newest also to ``<checkpoint_dir>/checkpoint``. Each line also
carries the compact range at its size (unsigned, but checked against the signed root before
use), so a restarted checkpointer resumes without re-reading the whole log.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from memmesh.errors import ConfigError, InvalidInputError

ALG_ED25519 = 0x01
DASH = "\u2014"
LOG_FILE = "checkpoints.jsonl"
LATEST_FILE = "checkpoint"
KEY_FILE = "signing.key"


def audit_folder(data_dir: Path) -> Path:
    """``<data dir>/audit``: where ``init-key`` puts the key by default and where checkpoints
    are written and looked for when ``[audit] checkpoint_dir`` is unset. One answer for the
    signer and every verifier (with the signing key, ``public_key_path`` or ``--public-key``),
    so a verifier never misses the checkpoints the signer wrote."""
    return data_dir / "audit"


def key_hash(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public).digest()[:4]


def _check_name(name: str) -> str:
    if not name or any(c.isspace() or c == "+" for c in name):
        raise InvalidInputError(f"key name {name!r} must be non-empty, without spaces or '+', e.g. memmesh-audit")
    return name


@dataclass(frozen=True)
class Verifier:
    """A public key that checks checkpoint signatures."""

    name: str
    public: bytes

    @property
    def hash(self) -> bytes:
        return key_hash(self.name, self.public)

    def text(self) -> str:
        """The C2SP verifier key: ``<name>+<hash hex>+<base64(0x01 || public key)>``."""
        return f"{self.name}+{self.hash.hex()}+{base64.b64encode(bytes([ALG_ED25519]) + self.public).decode()}"

    @classmethod
    def parse(cls, text: str, where: str) -> Verifier:
        parts = text.strip().split("+", 2)
        try:
            name, hash_hex, blob = parts
            raw = base64.b64decode(blob, validate=True)
            if raw[0] != ALG_ED25519 or len(raw) != 33:
                raise ValueError
            found = cls(name, raw[1:])
            if found.hash.hex() != hash_hex:
                raise ValueError
        except (ValueError, IndexError):
            raise ConfigError(f"{where} is not an Ed25519 verifier key (<name>+<hash>+<base64 key>)") from None
        return found


@dataclass(frozen=True)
class Signer:
    """The Ed25519 signing key of the checkpoints, read from ``[audit] signing_key_file``."""

    name: str
    key: Ed25519PrivateKey

    @property
    def verifier(self) -> Verifier:
        return Verifier(self.name, self.key.public_key().public_bytes_raw())

    def sign(self, body: str) -> str:
        """The note: body, blank line, this key's signature line."""
        signature = self.key.sign(body.encode())
        return f"{body}\n{DASH} {self.name} {base64.b64encode(self.verifier.hash + signature).decode()}\n"

    @classmethod
    def load(cls, path: Path) -> Signer:
        try:
            text = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"audit.signing_key_file {path}: {exc.strerror}; create one with `memmesh audit init-key`") from None
        parts = text.split("+", 4)
        try:
            if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
                raise ValueError
            raw = base64.b64decode(parts[4], validate=True)
            if raw[0] != ALG_ED25519 or len(raw) != 33:
                raise ValueError
            signer = cls(parts[2], Ed25519PrivateKey.from_private_bytes(raw[1:]))
            if signer.verifier.hash.hex() != parts[3]:
                raise ValueError
        except (ValueError, IndexError):
            raise ConfigError(
                f"audit.signing_key_file {path} is not a memmesh audit signing key (PRIVATE+KEY+<name>+<hash>+<key>); "
                "create one with `memmesh audit init-key`"
            ) from None
        return signer

    def text(self) -> str:
        seed = self.key.private_bytes_raw()
        return f"PRIVATE+KEY+{self.name}+{self.verifier.hash.hex()}+{base64.b64encode(bytes([ALG_ED25519]) + seed).decode()}"


def init_key(path: Path, name: str) -> Verifier:
    """Create a new signing key file (mode 0600, never overwriting) and its ``.pub`` beside it."""
    signer = Signer(_check_name(name), Ed25519PrivateKey.generate())
    if not path.parent.is_dir():
        raise InvalidInputError(f"cannot create {path}: the folder {path.parent} does not exist; create it first")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InvalidInputError(f"{path} already exists; the audit signing key is never overwritten (move it away first)") from None
    with os.fdopen(fd, "w") as handle:
        handle.write(signer.text() + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    public = path.with_name(path.name + ".pub")
    public.write_text(signer.verifier.text() + "\n")
    return signer.verifier


@dataclass(frozen=True)
class Checkpoint:
    """One parsed checkpoint note (signature not yet checked unless ``verified``)."""

    origin: str
    size: int
    root: bytes
    note: str
    frontier: tuple[str, ...] = ()
    head: str | None = None

    def body(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"


def make_note(signer: Signer, origin: str, size: int, root: bytes) -> str:
    return signer.sign(f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n")


def parse_note(note: str) -> tuple[Checkpoint, list[tuple[str, bytes]]]:
    """Split a note into its checkpoint and its signature lines ``(name, key hash || sig)``.

    Raises ValueError when the text is not a checkpoint note."""
    body, sep, sigs = note.partition("\n\n")
    if not sep:
        raise ValueError("no blank line between body and signatures")
    lines = body.split("\n")
    if len(lines) < 3:
        raise ValueError("a checkpoint body has an origin, a size and a root hash")
    origin, size_text, root_text = lines[:3]
    if not size_text.isdigit():
        raise ValueError(f"tree size {size_text!r} is not a number")
    root = base64.b64decode(root_text, validate=True)
    if len(root) != 32:
        raise ValueError("root hash is not 32 bytes")
    signatures = []
    for line in sigs.split("\n"):
        if not line:
            continue
        dash, name, blob = line.split(" ")
        if dash != DASH:
            raise ValueError("a signature line starts with an em dash")
        signatures.append((name, base64.b64decode(blob, validate=True)))
    return Checkpoint(origin=origin, size=int(size_text), root=root, note=note), signatures


def signed_by(note: str, signatures: list[tuple[str, bytes]], verifier: Verifier) -> bool:
    """True when one of the signatures is ``verifier``'s and is valid over the note body."""
    body = note.partition("\n\n")[0] + "\n"
    key = Ed25519PublicKey.from_public_bytes(verifier.public)
    for name, blob in signatures:
        if name == verifier.name and blob[:4] == verifier.hash and len(blob) == 68:
            try:
                key.verify(blob[4:], body.encode())
                return True
            except InvalidSignature:
                return False
    return False


def append_checkpoint(folder: Path, checkpoint: Checkpoint) -> None:
    """Append a checkpoint durably: one line, written whole under an exclusive lock, fsynced;
    then replace the ``checkpoint`` file (write, fsync, rename) with the newest note."""
    folder.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"note": checkpoint.note, "frontier": list(checkpoint.frontier), "head": checkpoint.head}) + "\n"
    fd = os.open(folder / LOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp = folder / f".{LATEST_FILE}.{os.getpid()}"
    with tmp.open("w") as handle:
        handle.write(checkpoint.note)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, folder / LATEST_FILE)


@dataclass
class CheckpointFile:
    """What ``checkpoints.jsonl`` holds for one origin: parsed notes, and lines that are not."""

    checkpoints: list[tuple[Checkpoint, list[tuple[str, bytes]]]]
    bad_lines: list[tuple[int, str]]
    torn_tail: bool = False


def read_checkpoints(folder: Path, origin: str) -> CheckpointFile:
    """Every checkpoint of ``origin`` in file order. A last line without its newline is a
    write cut short by a crash (``torn_tail``); any other unreadable line is reported."""
    found = CheckpointFile([], [])
    path = folder / LOG_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return found
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    elif lines:
        found.torn_tail = True
        lines.pop()
    for number, line in enumerate(lines, 1):
        try:
            item = json.loads(line)
            checkpoint, signatures = parse_note(item["note"])
            frontier = tuple(item.get("frontier") or ())
            head = item.get("head")
        except (ValueError, KeyError, TypeError) as exc:
            found.bad_lines.append((number, f"{path}:{number} is not a checkpoint ({exc})"))
            continue
        if checkpoint.origin != origin:
            continue
        found.checkpoints.append(
            (Checkpoint(checkpoint.origin, checkpoint.size, checkpoint.root, checkpoint.note, frontier, head), signatures)
        )
    return found
