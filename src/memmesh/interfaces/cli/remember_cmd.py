"""``memmesh remember FILE|-``: store a conversation's turns, then the facts in them."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from memmesh.errors import InvalidInputError
from memmesh.extraction.core import check_messages
from memmesh.interfaces.cli.context import JSON_OPTION, app, console, print_json, state
from memmesh.model import LOCAL_PRINCIPAL
from memmesh.sessions.core import check_session_id


@app.command("remember")
def remember(
    source: str = typer.Argument(
        ..., help="JSON file of messages ([{role, content, name?}, …], {\"messages\": […]} or JSON Lines); '-' reads stdin."
    ),
    session_id: str = typer.Option(None, "--session", "-s", help="Session to append the turns to (default: a new session)."),
    namespace: str = typer.Option(
        None, "--namespace", "-n", help="Root the session and its facts live under (default sessions.namespace)."
    ),
    infer: bool = typer.Option(True, "--infer/--no-infer", help="Extract facts after storing the turns (--no-infer: turns only)."),
    agent: str = typer.Option(None, "--agent", help="The agent the turns and facts are recorded for."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Remember a conversation: its turns are stored first (one batch), then the facts in
    them are extracted (offline, or by the \\[llm] server) and linked derived_from their turns."""
    messages = check_messages(read_messages(source))
    if session_id is not None:  # before a store is created for it
        state.name_flags()
        check_session_id(session_id)
    service = state.writing_service()
    result = service.extraction.remember(
        [{"role": m.role, "content": m.content, **({"name": m.name} if m.name else {})} for m in messages],
        session_id=session_id,
        namespace=namespace,
        infer=infer,
        agent_id=agent,
        principal=LOCAL_PRINCIPAL,
    )
    if as_json:
        print_json(result)
        return
    console.print(f"{len(result.turns)} turn(s) stored in session {result.session_id}", markup=False)
    report = result.report
    if report is None:
        return
    console.print(
        f"{report.mode}: {report.extracted} fact(s) extracted, {report.merged} merged, {report.superseded} superseding, "
        f"{report.contradicted} contradicting, {report.fallback} turn(s) fell back to offline, {len(report.failed)} failure(s)",
        markup=False,
    )
    for failure in report.failed:
        console.print(f"  failed (turns {failure.turns}): {failure.reason}", markup=False, style="yellow")


def read_messages(source: str) -> Any:
    """The messages in ``source`` (a path or '-'): a JSON array, an object with ``messages``,
    or JSON Lines with one message per line."""
    if source == "-":
        text = sys.stdin.read()
        where = "stdin"
    else:
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InvalidInputError(f"{source}: no such file; give a JSON file of messages or '-' for stdin") from None
        except IsADirectoryError:
            raise InvalidInputError(f"{source} is a folder; give one JSON file of messages in it, or '-' for stdin") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"{source}: cannot be read as UTF-8 text ({exc})") from None
        where = source
    if not text.strip():
        raise InvalidInputError(f'{where} is empty: give a JSON list of {{"role", "content"}} messages')
    try:
        data = json.loads(text)
    except ValueError:
        data = _json_lines(text, where)
    if isinstance(data, dict):
        if "messages" in data:
            data = data["messages"]
        elif "content" in data:
            data = [data]  # one message (JSON Lines of a single line)
        else:
            raise InvalidInputError(f'{where}: a JSON object needs a "messages" list (or is one message, with "content")')
    return data


def _json_lines(text: str, where: str) -> list[Any]:
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{where} line {number} is not JSON ({exc.msg}): give a JSON list or one message per line") from None
    return out
