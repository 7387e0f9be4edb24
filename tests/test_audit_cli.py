"""The audit log's building blocks (RFC 6962 tree, C2SP notes, key files) and its CLI."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from memmesh.audit import chain
from memmesh.audit.notes import Signer, Verifier, init_key, make_note, parse_note, signed_by
from memmesh.errors import ConfigError, InvalidInputError


def test_compact_range_root_equals_the_rfc6962_tree_at_every_size():
    leaves = [os.urandom(32) for _ in range(70)]
    tree = chain.Frontier()
    assert tree.root() == chain.EMPTY_ROOT == chain.merkle_root([])
    for n, leaf in enumerate(leaves, 1):
        tree.append(leaf)
        assert tree.root() == chain.merkle_root(leaves[:n])
        assert len(tree.nodes) == bin(n).count("1")
        again = chain.Frontier.from_hex(n, tree.to_hex())
        assert again.root() == tree.root()
    with pytest.raises(ValueError):
        chain.Frontier.from_hex(5, tree.to_hex())


def test_signing_key_file_is_owner_only_never_overwritten_and_signs_c2sp_notes(tmp_path):
    path = tmp_path / "signing.key"
    verifier = init_key(path, "log-key")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(InvalidInputError, match="never overwritten"):
        init_key(path, "log-key")
    with pytest.raises(InvalidInputError, match="without spaces"):
        init_key(tmp_path / "other.key", "bad name")
    signer = Signer.load(path)
    assert Verifier.parse((tmp_path / "signing.key.pub").read_text(), "pub") == verifier == signer.verifier
    note = make_note(signer, "example/log", 7, bytes(32))
    body, _, sig = note.partition("\n\n")
    assert body == "example/log\n7\n" + "A" * 43 + "=" and sig.startswith("\u2014 log-key ")
    checkpoint, signatures = parse_note(note)
    assert checkpoint.size == 7 and signed_by(note, signatures, verifier)
    tampered = note.replace("\n7\n", "\n8\n")
    assert not signed_by(tampered, parse_note(tampered)[1], verifier)
    (tmp_path / "junk.key").write_text("PRIVATE+KEY+x+00+AAAA")
    with pytest.raises(ConfigError, match="not a memmesh audit signing key"):
        Signer.load(tmp_path / "junk.key")


def _tamper(db: Path, sql: str) -> None:
    from memmesh.store.sqlite import register_functions

    conn = sqlite3.connect(db)
    register_functions(conn)
    conn.execute(sql)
    conn.commit()
    conn.close()


def test_cli_init_key_checkpoint_verify_export(cli, db_path, tmp_path):
    made = cli("audit", "init-key", "--path", str(tmp_path / "signing.key"), "--json")
    assert made.code == 0, made.err
    assert json.loads(made.out)["public_key"].startswith("memmesh-audit+")
    env = {"MEMMESH_AUDIT_SIGNING_KEY_FILE": str(tmp_path / "signing.key")}
    assert cli("store", "first memory", "-n", "cli", extra_env=env).code == 0
    assert cli("store", "second memory", "-n", "cli", extra_env=env).code == 0
    signed = cli("audit", "checkpoint", extra_env=env)
    assert signed.code == 0 and signed.out.split("\n")[1] == "2", signed.out + signed.err
    assert "no new entries" in cli("audit", "checkpoint", extra_env=env).out
    ok = cli("audit", "verify", extra_env=env)
    assert ok.code == 0 and "ok: entries 0..1 verified, 1 signed checkpoints" in ok.out
    lines = [json.loads(line) for line in cli("audit", "export", "--since", "1", extra_env=env).out.splitlines()]
    assert [e["index"] for e in lines] == [1] and lines[0]["action"] == "memory.add"
    assert [e["index"] for e in json.loads(cli("audit", "export", "--json", extra_env=env).out)] == [0, 1]

    _tamper(db_path, "UPDATE audit_log SET namespace = 'elsewhere' WHERE idx = 0")
    bad = cli("audit", "verify", extra_env=env)
    assert bad.code == 1 and "FAIL modified: entry 0" in bad.out and "first bad entry: 0" in bad.out
    report = json.loads(cli("audit", "verify", "--json", extra_env=env).out)
    assert report["ok"] is False and report["first_bad_index"] == 0
    # verifying elsewhere with only the public key
    elsewhere = cli("audit", "verify", "--public-key", str(tmp_path / "signing.key.pub"), "--json")
    assert json.loads(elsewhere.out)["first_bad_index"] == 0


def test_cli_bad_input_is_one_clear_error(cli, db_path, tmp_path):
    assert cli("store", "a memory", "-n", "cli").code == 0
    no_key = cli("audit", "checkpoint")
    assert no_key.code != 0 and "memmesh audit init-key" in no_key.err
    init_key(tmp_path / "k.key", "k")
    env = {"MEMMESH_AUDIT_SIGNING_KEY_FILE": str(tmp_path / "k.key")}
    zero = cli("audit", "prune", "--older-than-days", "0", extra_env=env)
    assert zero.code != 0 and "positive number of days" in zero.err
    os.chmod(tmp_path / "k.key", 0o644)
    loose = cli("audit", "verify", extra_env=env)
    assert loose.code != 0 and "chmod 600" in loose.err
    missing = cli("audit", "verify", "--public-key", str(tmp_path / "nope.pub"))
    assert missing.code != 0 and "nope.pub" in missing.err
    assert cli("audit", "export", "--since", "-1").code != 0


def _signed_log(cli, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A store with two entries under a checkpoint signed with init-key's default key (no
    [audit] checkpoint_dir configured); the .pub path and the env naming the signing key."""
    made = json.loads(cli("audit", "init-key", "--json").out)
    assert made["signing_key_file"] == str(tmp_path / "data" / "audit" / "signing.key")
    env = {"MEMMESH_AUDIT_SIGNING_KEY_FILE": made["signing_key_file"]}
    assert cli("store", "one", "-n", "x", extra_env=env).code == 0
    assert cli("store", "two", "-n", "x", extra_env=env).code == 0
    assert cli("audit", "checkpoint", extra_env=env).code == 0
    assert (tmp_path / "data" / "audit" / "checkpoints.jsonl").is_file()
    return Path(made["public_key_path"]), env


def test_verify_with_only_the_public_key_reads_the_checkpoints_where_the_signer_wrote_them(cli, db_path, tmp_path):
    """An auditor's `verify --public-key` (no signing key, no [audit] checkpoint_dir) looks in
    <data dir>/audit, where `audit checkpoint` wrote them: a cut tail is a rollback, not `ok`."""
    pub, _ = _signed_log(cli, tmp_path)
    intact = cli("audit", "verify", "--public-key", str(pub), "--json")
    report = json.loads(intact.out)
    assert intact.code == 0 and report["checkpoints_checked"] == 1, intact.out + intact.err
    assert report["checkpoint_dir"] == str(tmp_path / "data" / "audit")
    _tamper(db_path, "DELETE FROM audit_log WHERE idx = 1")
    cut = cli("audit", "verify", "--public-key", str(pub))
    assert cut.code == 1, cut.out + cut.err
    assert "FAIL rollback: entry 1" in cut.out and "first bad entry: 1" in cut.out, cut.out
    # the checkpoints moved elsewhere: --checkpoint-dir points verify at them
    moved = tmp_path / "elsewhere"
    (tmp_path / "data" / "audit").rename(moved)
    there = cli("audit", "verify", "--public-key", str(moved / "signing.key.pub"), "--checkpoint-dir", str(moved))
    assert there.code == 1 and "FAIL rollback: entry 1" in there.out, there.out + there.err


def test_verify_given_a_key_fails_when_it_finds_no_checkpoint_and_an_empty_log_says_so(cli, db_path, tmp_path):
    """Log, anchor and checkpoint files wiped: with a verifier key that is a failure naming
    where verify looked and how to point it elsewhere; without one, `ok` says the log is empty
    (it used to print `ok: entries 0..-1 verified`)."""
    pub, _ = _signed_log(cli, tmp_path)
    kept = tmp_path / "kept.pub"
    kept.write_text(pub.read_text())
    _tamper(db_path, "DELETE FROM audit_log")
    _tamper(db_path, "DELETE FROM audit_anchor")
    for name in ("checkpoints.jsonl", "checkpoint"):
        (tmp_path / "data" / "audit" / name).unlink()
    looked = tmp_path / "data" / "audit" / "checkpoints.jsonl"
    wiped = cli("audit", "verify", "--public-key", str(kept))
    assert wiped.code == 1, wiped.out + wiped.err
    assert f"FAIL no_checkpoint: no checkpoint of this log was found in {looked}" in wiped.out, wiped.out
    assert "--checkpoint-dir" in wiped.out and "[audit] checkpoint_dir" in wiped.out and "ok:" not in wiped.out
    report = json.loads(cli("audit", "verify", "--public-key", str(kept), "--json").out)
    assert report["ok"] is False and [p["kind"] for p in report["problems"]] == ["no_checkpoint"]
    configured = cli("audit", "verify", extra_env={"MEMMESH_AUDIT_PUBLIC_KEY_PATH": str(kept)})
    assert configured.code == 1 and "FAIL no_checkpoint" in configured.out, configured.out + configured.err
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    nowhere = cli("audit", "verify", "--public-key", str(kept), "--checkpoint-dir", str(empty_dir))
    assert nowhere.code == 1 and str(empty_dir / "checkpoints.jsonl") in nowhere.out, nowhere.out
    keyless = cli("audit", "verify")
    assert keyless.code == 0 and "ok: the log is empty: no entries to verify" in keyless.out, keyless.out
    assert "0..-1" not in keyless.out
