"""CLI papercuts a new user hits: a value an option never takes is a usage error (exit 2)
saying what to fix, as docs/cli.md promises; bad data stays an error (exit 1)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from tests.conftest import CliResult


def _usage(result: CliResult, *words: str) -> None:
    assert result.code == 2, result
    assert result.err.startswith("error: ") and len(result.err.strip().splitlines()) == 1, result.err
    assert all(word in result.err for word in words), result.err


def test_an_option_value_out_of_its_choices_or_range_exits_2(cli) -> None:
    # the real process once: the exit code a shell sees
    _usage(cli("store", "x", "--tier", "forever"), "error: --tier: ", "'short', 'mid' or 'long'")
    port = cli("serve", "--port", "99999")
    _usage(port, "65535")
    assert port.err.startswith("error: --port: ") and "server.port" not in port.err, port.err  # the flag typed, not the setting


def test_every_command_answers_a_value_it_never_takes_with_exit_2(cli_in_process) -> None:
    opened = cli_in_process("bus", "open", "--participants", "a,b", "--kind", "queue", "--json")
    assert opened.code == 0, opened.err
    conv = json.loads(opened.out)
    token = ["--token", conv["token"]]
    memory_id = json.loads(cli_in_process("store", "a fact", "--json").out)["id"]
    subscription = json.loads(cli_in_process("subscribe", "add", "--namespace", "t", "http://93.184.216.34/x", "--json").out)["id"]
    cases = [
        (("bus", "tasks", conv["id"], *token, "--state", "deda"), ("ready, leased, done or dead",)),
        (("bus", "open", "--participants", "a", "--kind", "group"), ("chat or queue",)),
        (("bus", "claim", conv["id"], "--worker", "a", *token, "--limit", "0"), ("between 1 and 100",)),
        (("bus", "claim", conv["id"], "--worker", "a", *token, "--lease", "-1"), ("lease must be above 0",)),
        (("store", "x", "--kind", "nope"), ("--kind: ",)),
        (("store", "x", "--priority", "11"), ("--priority: ", "10")),
        (("store", "x", "--on-conflict", "merge"), ("--on-conflict: ", "'error', 'update' or 'version'")),
        (("update", memory_id, "--tier", "forever"), ("--tier: ",)),
        (("list", "--tier", "forever"), ("use one of short, mid, long",)),
        (("list", "--limit", "0"), ("between 1 and",)),
        (("recall", "x", "--mode", "fuzzy"), ("hybrid, keyword, vector",)),
        (("recall", "x", "--top-k", "0"), ("error: --top-k must be",)),
        (("link", memory_id, memory_id, "-r", "likes"), ("related_to",)),
        (("keys", "create", "--agent", "bot", "--role", "god"), ("reader, writer",)),
        (("pending", "list", "--status", "nope"), ("pending, approved",)),
        (("mcp", "--profile", "nope"), ("--profile", "core, graph")),
        (("mcp", "--agent-id", "a" * 200), ("error: --agent-id: ", "at most 128 characters")),
        (("subscribe", "add", "--namespace", "t", "--events", "nope", "http://93.184.216.34/x"), ("memory.created",)),
        (("subscribe", "deliveries", subscription, "--state", "nope"), ("pending, delivered or dead",)),
    ]
    for args, words in cases:
        _usage(cli_in_process(*args), *words)
    # bad data is not a usage error: exit 1 as before; a flag's value the core refuses is (exit 2)
    assert cli_in_process("store", "").code == 1
    _usage(cli_in_process("store", "x", "-n", "bad//ns"), "error: --namespace 'bad//ns' is invalid")
    assert cli_in_process("get", "no-such-id").code == 1


def test_store_and_update_name_the_flag_of_a_bad_value_not_the_field(cli_in_process, db_path: Path) -> None:
    """The core's field is ``on_conflict`` or ``ttl_seconds``; the user typed ``--on-conflict``, ``--ttl``."""
    for args, flag in [
        (("store", "x", "--on-conflict", "merge"), "--on-conflict"),
        (("store", "x", "--ttl", "0"), "--ttl"),
        (("store", "x", "--confidence", "2"), "--confidence"),
        (("store", "x", "-p", "0"), "--priority"),
    ]:
        result = cli_in_process(*args)
        _usage(result, f"error: {flag}: ")
        assert "_" not in result.err.split(":")[1], result.err
    both = cli_in_process("store", "x", "--priority", "0", "--confidence", "2")
    _usage(both, "error: --priority: ", "; --confidence: ")
    _usage(cli_in_process("store", "x", "--id", "a/b"), "error: --id must be")  # a value --id never takes
    assert not db_path.exists()  # a refused store leaves no database behind
    memory_id = json.loads(cli_in_process("store", "a fact", "--json").out)["id"]
    _usage(cli_in_process("update", memory_id, "--kind", "nope"), "error: --kind: ")
    _usage(cli_in_process("update", memory_id, "-p", "11"), "error: --priority: ")
    stored = cli_in_process("store", "another fact", "--title", "t", "--on-conflict", "update", "--ttl", "60", "--json")
    assert stored.code == 0 and json.loads(stored.out)["expires_at"] is not None, stored.err


def test_a_value_the_core_refuses_names_the_flag_typed_not_the_parameter(cli_in_process, tmp_path: Path) -> None:
    """Range and date checks live in the core, whose message names its parameter (``top_k``)
    or setting (``federation.peer_key_file``); the CLI names the flag that set it, exit 2."""
    assert cli_in_process("store", "a fact").code == 0
    for args, said in [
        (("recall", "q", "--top-k", "0"), "--top-k must be between 1 and"),
        (("search", "q", "-k", "5000"), "--top-k must be between 1 and"),
        (("list", "--limit", "0"), "--limit must be between 1 and"),
        (("pending", "list", "--limit", "0"), "--limit must be between 1 and"),
        (("recall", "q", "--budget-tokens", "0"), "--budget-tokens must be a positive integer"),
        (("recall", "q", "--as-of", "garbage"), "--as-of 'garbage' is not a date/time"),
        (("search", "q", "--since", "soon"), "--since 'soon' is not a date/time"),
        (("namespace", "set-standard", "-n", "a", "--ttl", "0"), "--ttl must be a whole number"),
        (("namespace", "set-standard", "-n", "a", "--retention", "0"), "--retention must be a whole number"),
        (("curator", "run", "--max-ops", "0"), "--max-ops must be a whole number"),
        (("cluster", "verify", "--peers", "http://127.0.0.1:9", "--peer-key-file", str(tmp_path / "none")), "--peer-key-file "),
    ]:
        result = cli_in_process(*args)
        _usage(result, f"error: {said}")
        assert "_" not in result.err.split(" ")[1], result.err
    (tmp_path / "peers.toml").write_text(f"[federation]\npeer_key_file = '{tmp_path / 'none'}'\n")
    from_file = cli_in_process(
        "cluster", "verify", "--peers", "http://127.0.0.1:9", extra_env={"MEMMESH_CONFIG": str(tmp_path / "peers.toml")}
    )
    assert from_file.code == 1 and from_file.err.startswith("error: federation.peer_key_file "), from_file  # no flag set it


def test_a_bad_node_id_flag_is_a_usage_error_before_any_store_is_opened(cli_in_process, db_path: Path) -> None:
    """``--node-id`` is ``storage.node_id``: the settings check its form (the store only did,
    when adopting it: exit 1, naming no flag)."""
    for args in (("sync-daemon", "--peers", "http://127.0.0.1:9"), ("serve", "--port", "0")):
        _usage(cli_in_process(*args, "--node-id", "bad id!"), "error: --node-id: node id 'bad id!' is not valid: use letters")
    assert not db_path.exists()
    from_env = cli_in_process("stats", extra_env={"MEMMESH_STORAGE_NODE_ID": "bad id!"})
    assert from_env.code == 1 and "environment variable MEMMESH_STORAGE_NODE_ID" in from_env.err, from_env


def test_a_bad_value_from_a_variable_or_file_is_still_exit_1(cli_in_process) -> None:
    result = cli_in_process("stats", extra_env={"MEMMESH_SERVER_PORT": "99999"})
    assert result.code == 1 and "environment variable MEMMESH_SERVER_PORT" in result.err
    agent = cli_in_process("mcp", extra_env={"MEMMESH_MCP_AGENT_ID": "a" * 200})
    assert agent.code == 1 and "environment variable MEMMESH_MCP_AGENT_ID" in agent.err, agent.err


def test_a_tilde_in_a_sqlite_url_is_expanded_where_it_is_shown_and_opened(cli_in_process, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    made = cli_in_process("--db", "sqlite:///~/x.db", "init", "--json", extra_env={"HOME": str(home)})
    assert made.code == 0, made.err
    assert json.loads(made.out)["url"] == f"sqlite:///{home / 'x.db'}"  # not sqlite:///~/x.db
    assert (home / "x.db").is_file() and not (tmp_path / "~").exists()
    text = cli_in_process("init", extra_env={"HOME": str(home), "MEMMESH_DB": "sqlite:///~/x.db"})
    assert text.code == 0 and f"ready at sqlite:///{home / 'x.db'} " in text.out, text


def test_fix_hints_name_the_cli_flag_and_command(cli_in_process) -> None:
    opened = json.loads(cli_in_process("bus", "open", "--participants", "a,b", "--json").out)
    token = ["--token", opened["token"]]
    nothing = cli_in_process("bus", "ack", opened["id"], "--agent", "b", *token)
    _usage(nothing, "say what to ack", "; pass --all")
    assert " or all (" not in nothing.err and "--all true" not in nothing.err
    both = cli_in_process("bus", "ack", opened["id"], "some-id", "--all", "--agent", "b", *token)
    _usage(both, "not both")
    missing = cli_in_process("session", "rehydrate", "nosuch")
    assert missing.code == 1 and missing.err.strip() == (
        "error: no session nosuch: a session starts with its first turn; "
        "use memmesh session append to add a turn, or memmesh session list to see the sessions there are"
    )


def test_hints_to_another_operation_name_cli_commands(cli_in_process) -> None:
    assert cli_in_process("init").code == 0
    pending = cli_in_process("pending", "approve", "nope")
    assert pending.code == 1 and pending.err.strip() == (
        "error: no pending action with id 'nope'; use memmesh pending list --status all "
        "to see the ids of every pending action, decided ones too"
    )
    key = cli_in_process("keys", "revoke", "0123456789ab")
    assert key.code == 1 and key.err.strip().endswith("; use memmesh keys list to see the key ids"), key.err
    standard = cli_in_process("namespace", "clear-standard", "-n", "nowhere")
    assert standard.err.strip().endswith("; use memmesh namespace list to see the namespaces that have one"), standard.err
    run = cli_in_process("curator", "rollback", "nope")
    assert run.err.strip().endswith("; use memmesh curator runs to see the run ids"), run.err


def test_every_operation_an_error_may_name_exists_in_every_face() -> None:
    from memmesh.errors import OPERATIONS
    from memmesh.interfaces.cli.app import CLI_COMMANDS, app, load_every_command
    from memmesh.interfaces.http.handlers import HTTP_OPERATIONS
    from memmesh.interfaces.http.routes import admin, curator, governance, sessions, subscriptions
    from memmesh.interfaces.mcp.catalog import FAMILIES, tools_for
    from memmesh.interfaces.mcp.render import MCP_TOOLS
    from memmesh.interfaces.web.app import PREFIX, WEB_OPERATIONS
    from memmesh.interfaces.web.pages import routes as web_routes
    from memmesh.memory import Memory

    load_every_command()  # `.commands` below holds only the commands loaded so far

    def command(words: list[str]) -> Any:
        found: Any = typer.main.get_command(app)
        for word in words:
            found = getattr(found, "commands", {}).get(word)
        return found

    tools = set(tools_for(list(FAMILIES)))
    routers = [admin.router, curator.router, governance.router, sessions.router, subscriptions.router]  # where OPERATIONS are served
    routes = {f"{method} {route.path}" for router in routers for route in router.routes for method in getattr(route, "methods", ())}

    class Paths:  # stands in for the WebApp: each page's route is just its path here
        def route(self, path: str, *_: Any, **__: Any) -> str:
            return path

    pages = {PREFIX + path for path in web_routes(Paths())}  # type: ignore[arg-type]
    for table in (CLI_COMMANDS, HTTP_OPERATIONS, MCP_TOOLS, WEB_OPERATIONS):
        assert set(table) == set(OPERATIONS)  # each face spells every operation (None: it has none)
    for operation, python in OPERATIONS.items():
        if python is not None:  # named by its Python API method, arguments included
            assert callable(getattr(Memory, python.split("(")[0])), operation
        words = CLI_COMMANDS[operation].split()
        found = command([w for w in words[1:] if not w.startswith("-")][:2])
        assert words[0] == "memmesh" and found is not None, operation
        assert all(flag in {o for p in found.params for o in p.opts} for flag in words if flag.startswith("--")), operation
        assert HTTP_OPERATIONS[operation].split(" with ")[0].split("?")[0] in routes, operation
        tool = MCP_TOOLS[operation]
        assert tool is None or tool.split()[0] in tools, operation
        page = WEB_OPERATIONS[operation]
        assert page is None or page.split("(")[-1].split(")")[0].split("?")[0] in pages, operation


def test_the_cli_can_undo_a_delete(cli: Any) -> None:
    """MCP (memory_restore) and the web inspector could undo a delete; the CLI could not."""
    stored = json.loads(cli("store", "the deploy key rotates on Mondays", "--tags", "ops", "--json").out)
    deleted = cli("delete", stored["id"])
    assert deleted.code == 0 and f"undo: memmesh undelete {stored['id']}" in deleted.out
    assert cli("get", stored["id"]).code == 1
    restored = cli("undelete", stored["id"], "--json")
    assert restored.code == 0, restored.err
    back = json.loads(cli("get", stored["id"], "--json").out)
    assert (back["id"], back["content"], back["tags"]) == (stored["id"], stored["content"], stored["tags"])
    again = cli("undelete", stored["id"])
    assert again.code == 1 and "is not deleted" in again.err
    never = cli("undelete", "no-such-id")
    assert never.code == 1 and "no deleted memory with id no-such-id" in never.err


def test_a_namespace_that_names_a_file_here_warns_of_an_unquoted_star(cli_in_process, tmp_path: Path, monkeypatch) -> None:
    # `memmesh keys create --agent bot --namespace *` in a folder holding one file: the shell
    # hands memmesh that file's name, and the key is scoped to a namespace nobody meant
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "notes.txt").write_text("x")
    monkeypatch.chdir(folder)
    expanded = cli_in_process("keys", "create", "--agent", "bot", "--namespace", "notes.txt", "--json")
    assert expanded.code == 0, expanded.err
    assert json.loads(expanded.out)["namespaces"] == ["notes.txt"]  # created as asked: the warning decides nothing
    assert "warning: namespace 'notes.txt' is also the name of a file in this directory" in expanded.err, expanded.err
    assert "quote it: --namespace '*'" in expanded.err
    registered = cli_in_process("agents", "register", "planner", "--namespace", "notes.txt")
    assert registered.code == 0 and "--namespace '*'" in registered.err, registered.err
    for quiet in (("keys", "create", "--agent", "b2", "--namespace", "*"), ("keys", "create", "--agent", "b3", "-n", "team/*")):
        result = cli_in_process(*quiet)
        assert result.code == 0 and "warning" not in result.err, result.err
