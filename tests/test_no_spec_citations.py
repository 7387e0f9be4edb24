"""Users have no SPEC.md: nothing they read may send them to "SPEC §N". The docs pages and
README, the HTTP API's schema (served by a real uvicorn), and the Python API's help (the MCP
tools': tests/mcp/test_no_spec_citations_mcp.py) point at the docs page that explains a thing instead."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

from tests.http.http_support import ThreadServer, http_settings

import memmesh
from memmesh.interfaces.client import AsyncClient, Client

ROOT = Path(__file__).resolve().parents[1]
CITATION = re.compile(r"\bSPEC\b")


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_no_docs_page_cites_the_spec() -> None:
    found = [f"{p.name}:{n}: {line}" for p in _pages() for n, line in enumerate(p.read_text().splitlines(), 1) if CITATION.search(line)]
    assert found == [], found


def test_the_http_schema_cites_no_spec(tmp_path: Path) -> None:
    server = ThreadServer(http_settings(tmp_path))
    running = server.start()
    try:
        schema = running.http().get("/openapi.json")
        assert schema.status_code == 200
        text = json.dumps(schema.json())
        assert not CITATION.search(text), [m.start() for m in CITATION.finditer(text)][:5]
    finally:
        running.close_clients()
        server.stop()


def test_the_python_api_cites_no_spec() -> None:
    docs = {f"Memory.{n}": inspect.getdoc(f) or "" for n, f in inspect.getmembers(memmesh.Memory, inspect.isfunction)}
    for cls in (Client, AsyncClient):
        docs |= {f"{cls.__name__}.{n}": inspect.getdoc(f) or "" for n, f in inspect.getmembers(cls, inspect.isfunction)}
    cited = sorted(where for where, text in docs.items() if CITATION.search(text))
    assert cited == [], cited
