"""Configuration: precedence, typos, secrets, defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from memmesh import ConfigError
from memmesh.config import load_settings


def test_precedence_flag_over_env_over_file_over_default(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[limits]\nmax_page_size = 11\nmax_content_bytes = 1000\n[recall]\ndefault_top_k = 3\n")
    env = {"MEMMESH_LIMITS_MAX_PAGE_SIZE": "22", "MEMMESH_LIMITS_MAX_CONTENT_BYTES": "2000"}
    settings = load_settings(config, overrides={"limits": {"max_content_bytes": 3000, "max_page_size": None}}, env=env)
    assert settings.limits.max_content_bytes == 3000  # flag
    assert settings.limits.max_page_size == 22  # env
    assert settings.recall.default_top_k == 3  # file
    assert settings.limits.max_body_bytes == 2 * 1024 * 1024  # default
    assert settings.config_file == config


def test_db_env_and_default_location(tmp_path: Path) -> None:
    settings = (
        load_settings(None, env={"MEMMESH_DB": str(tmp_path / "x.db"), "MEMMESH_CONFIG": str(tmp_path / "c.toml")})
        if (tmp_path / "c.toml").write_text("") is not None
        else None
    )
    assert settings is not None and settings.storage_url == f"sqlite:///{tmp_path / 'x.db'}"
    default = load_settings(None, env={"MEMMESH_DATA_DIR": str(tmp_path / "data"), "MEMMESH_CONFIG": str(tmp_path / "c.toml")})
    assert default.storage_url == f"sqlite:///{tmp_path / 'data' / 'memmesh.db'}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[storage]\nulr = 'x'\n", "unknown key 'storage.ulr'"),
        ("[storge]\nurl = 'x'\n", "unknown section or key 'storge'"),
        ("[limits]\nmax_page_size = 'lots'\n", "'limits.max_page_size'"),
        ("[embeddings]\nprovider = 'magic'\n", "'embeddings.provider'"),
        ("[embeddings]\napi_key = 'sk-1'\n", "inline secret"),
        ("[server]\nport = 70000\n", "'server.port'"),
    ],
)
def test_config_errors_say_what_to_fix(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(config, env={})
    assert message in str(info.value) and str(config) in str(info.value)


def test_env_values_are_validated_too(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"recall\.default_top_k"):
        load_settings(None, env={"MEMMESH_RECALL_DEFAULT_TOP_K": "zero", "MEMMESH_CONFIG": str(tmp_path / "none.toml")}) if (
            tmp_path / "none.toml"
        ).write_text("") is not None else None


def test_api_key_comes_from_env_or_file(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("sk-from-file\n")
    key_file.chmod(0o600)  # a secret file must be the owner's alone (tests/test_ops_secrets.py)
    config = tmp_path / "config.toml"
    config.write_text(f'[embeddings]\nprovider = "openai"\napi_key_file = "{key_file}"\n')
    assert load_settings(config, env={}).embedding_api_key() == "sk-from-file"
    config.write_text('[embeddings]\nprovider = "openai"\napi_key_env = "MY_KEY"\n')
    import os

    os.environ["MY_KEY"] = "sk-from-env"
    try:
        assert load_settings(config, env={}).embedding_api_key() == "sk-from-env"
    finally:
        del os.environ["MY_KEY"]


@pytest.mark.parametrize(("section", "read"), [("embeddings", "embedding_api_key"), ("llm", "llm_api_key")])
def test_each_sections_api_key_follows_the_same_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, section: str, read: str) -> None:
    """Both keys are read by one rule: the env variable first, else the file (stripped, empty
    = no key), and a file that cannot be used is a ConfigError naming this section's setting."""
    key_file = tmp_path / "key"
    key_file.write_text("  sk-file  \n")
    key_file.chmod(0o600)
    both = {section: {"api_key_env": "CLEANUP_TEST_KEY", "api_key_file": str(key_file)}}
    monkeypatch.setenv("CLEANUP_TEST_KEY", "sk-env")
    assert getattr(load_settings(None, overrides=both, env={}), read)() == "sk-env"
    monkeypatch.setenv("CLEANUP_TEST_KEY", "")
    assert getattr(load_settings(None, overrides=both, env={}), read)() is None  # an empty variable: no key, not the file
    file_only = {section: {"api_key_file": str(key_file)}}
    assert getattr(load_settings(None, overrides=file_only, env={}), read)() == "sk-file"
    key_file.write_text("\n")
    assert getattr(load_settings(None, overrides=file_only, env={}), read)() is None
    folder = tmp_path / "a-folder"
    folder.mkdir(mode=0o700)
    with pytest.raises(ConfigError, match=rf"^{section}\.api_key_file {folder} is not a regular file"):
        getattr(load_settings(None, overrides={section: {"api_key_file": str(folder)}}, env={}), read)()
    assert getattr(load_settings(None, env={}), read)() is None


def test_passwords_in_store_urls_are_never_printed(cli) -> None:
    result = cli("--db", "postgresql://alice:hunter2@127.0.0.1:1/memmesh", "doctor", "--json")
    assert "hunter2" not in result.out + result.err
    assert result.code == 1


@pytest.mark.parametrize("section", ["storage", "embeddings", "server", "auth", "mcp"])
@pytest.mark.parametrize("key", ["api_key", "token", "password"])
def test_inline_secret_advice_names_only_real_keys(tmp_path: Path, section: str, key: str) -> None:
    """Following the inline-secret error's advice must not lead to an "unknown key" error."""
    import re

    config = tmp_path / "config.toml"
    config.write_text(f"[{section}]\n{key} = 'sk-1'\n")
    with pytest.raises(ConfigError) as info:
        load_settings(config, env={})
    message = str(info.value)
    assert "inline secret" in message
    suggested = re.findall(r"\[(\w+)\] (\w+_(?:env|file))\b", message) or [
        (section, k) for k in re.findall(r"\b(\w+_(?:env|file)) =", message)
    ]
    assert suggested, message
    for where, name in suggested:
        value = "/tmp/key" if name.endswith("_file") else "SOME_VAR"
        config.write_text(f"[{where}]\n{name} = '{value}'\n")
        load_settings(config, env={})  # a real key: no ConfigError
