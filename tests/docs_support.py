"""Run the examples of README.md and docs/*.md as a new user would, in page order.

The conventions, written down once (docs/writing-docs.md says the same for writers):

- An *example* is a fenced block tagged ``bash``, ``sh``, ``shell``, ``console``, ``python``,
  ``toml`` or ``json``. ``text`` and ``markdown`` fences are illustrations (output, formulas);
  an untagged fence or another language is an error, so nothing escapes the harness unmarked.
- ``bash``/``sh``/``shell`` blocks run as one bash script (``set -eo pipefail``); ``console``
  blocks run their ``$ `` lines and ignore the rest (it is output). ``curl`` runs with
  ``--fail-with-body``, so an HTTP error fails the example.
- ``python`` blocks run as a script each. ``toml`` blocks are loaded by the config loader
  (``load_settings``). ``json`` blocks are parsed, and validated against a model when a
  ``validate`` marker names one.
- Every page runs against a fresh store in a temp dir: ``HOME``, the XDG dirs and the working
  directory are inside it, and no ``MEMMESH_*`` variable is inherited.
- A shell line that runs ``memmesh serve`` starts that server in the background (replacing the
  page's previous one) on a free port, and waits until ``/healthz`` answers; in every example
  of the page, ``9077`` and the ``--port`` of serve lines become that port.
- ``mm_…`` stands for the API key most recently printed on the page (by ``memmesh keys
  create``), and ``3f9c2a1b7d4e`` (the key id the pages show) for that key's id; the harness
  substitutes both.
- Markers are HTML comments on the line(s) right above a fence:
  ``<!-- docs-test: skip REASON -->`` (the only way to not run an example; REASON is required)
  and ``<!-- docs-test: validate dotted.path.Model -->`` (for a json block).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

SHELL_LANGS = {"bash", "sh", "shell"}
RUN_LANGS = SHELL_LANGS | {"console", "python", "toml", "json"}
SHOW_LANGS = {"text", "markdown"}  # output, formulas, marker syntax: shown, never run
MARKER_KINDS = {"skip", "validate"}
KEY_PLACEHOLDER = "mm_…"
KEY_ID_PLACEHOLDER = "3f9c2a1b7d4e"
DOC_PORT = "9077"
EXAMPLE_TIMEOUT_S = 180

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+|~~~+)(?P<info>.*)$")
_MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<kind>\S+)\s*(?P<arg>.*?)\s*-->\s*$")
_KEY = re.compile(r"\bmm_[0-9a-f]{12}_[A-Za-z0-9_-]{20,}")
_SERVE = re.compile(r"^memmesh(\s+--(db|config)(\s+|=)\S+)*\s+serve\b")


class DocsError(Exception):
    """A page that breaks the conventions (a bad marker), reported as ``page:line: message``."""


@dataclass
class Example:
    """One fenced block: where it is, its language, its text and its markers."""

    page: Path
    line: int  # 1-based line of the first line of code
    lang: str
    code: str
    markers: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.lang in RUN_LANGS

    @property
    def skip_reason(self) -> str | None:
        return self.markers.get("skip")


def collect(page: Path) -> list[Example]:
    """Every fenced block of ``page`` in order, with the markers right above it.

    Raises DocsError for a marker that is not right above a fence, an unknown marker kind,
    a skip without a reason, or an unclosed fence.
    """
    lines = page.read_text(encoding="utf-8").splitlines()
    rel = page.relative_to(ROOT)
    examples: list[Example] = []
    pending: dict[str, str] = {}
    pending_line = 0
    i = 0
    while i < len(lines):
        marker = _MARKER.match(lines[i])
        if marker:
            kind, arg = marker["kind"], marker["arg"]
            if kind not in MARKER_KINDS:
                raise DocsError(f"{rel}:{i + 1}: unknown docs-test marker {kind!r} (known: {', '.join(sorted(MARKER_KINDS))})")
            if not arg:
                raise DocsError(f"{rel}:{i + 1}: docs-test {kind} needs an argument (a reason for skip, a model for validate)")
            pending[kind], pending_line = arg, i + 1
            i += 1
            continue
        fence = _FENCE.match(lines[i])
        if fence is None:
            if pending:
                raise DocsError(f"{rel}:{pending_line}: a docs-test marker must be right above a fenced block")
            i += 1
            continue
        start, mark, indent = i, fence["fence"], fence["indent"]
        lang = fence["info"].strip().split(" ")[0].lower()
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(mark):
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
            i += 1
        if i >= len(lines):
            raise DocsError(f"{rel}:{start + 1}: fence is never closed")
        if lang not in RUN_LANGS | SHOW_LANGS:
            # An untagged or unknown fence would silently not run: the skip marker must stay
            # the only way not to run an example.
            known = ", ".join(sorted(RUN_LANGS | SHOW_LANGS))
            raise DocsError(f"{rel}:{start + 1}: fence language {lang or '(none)'!r} is not one the harness knows ({known})")
        examples.append(Example(page, start + 2, lang, "\n".join(body) + "\n", dict(pending)))
        pending = {}
        i += 1
    if pending:
        raise DocsError(f"{rel}:{pending_line}: a docs-test marker must be right above a fenced block")
    return examples


# -- running ------------------------------------------------------------------------------


@dataclass
class Failure:
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PageRun:
    """The sandbox one page runs in: temp HOME and working dir, at most one server, the last key."""

    def __init__(self, page: Path, root: Path) -> None:
        self.page = page
        self.root = root
        self.home = root / "home"
        self.cwd = root / "work"
        for path in (self.home / ".config", self.home / ".local/share", self.home / ".cache", self.cwd):
            path.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.key: str | None = None
        self.server: subprocess.Popen[bytes] | None = None
        self.server_log = root / "server.log"
        bin_dir = str(Path(sys.executable).parent)
        skip = ("MEMMESH_", "XDG_", "PYTEST_", "COV_", "FORCE_COLOR", "PY_COLORS", "TERMINAL_WIDTH")
        env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
        env.update(
            {
                "HOME": str(self.home),
                "XDG_CONFIG_HOME": str(self.home / ".config"),
                "XDG_DATA_HOME": str(self.home / ".local/share"),
                "XDG_CACHE_HOME": str(self.home / ".cache"),
                "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
                "PYTHONUNBUFFERED": "1",
                "NO_COLOR": "1",
                "COLUMNS": "120",
            }
        )
        self.env = env
        _seed_model_cache(self.home / ".local/share/memmesh/cache")

    # -- substitutions --------------------------------------------------------------------

    def substitute(self, text: str) -> str:
        text = text.replace(DOC_PORT, str(self.port))
        if self.key:
            text = text.replace(KEY_PLACEHOLDER, self.key).replace(KEY_ID_PLACEHOLDER, self.key.split("_")[1])
        return text

    def note_output(self, text: str) -> None:
        keys = _KEY.findall(text)
        if keys:
            self.key = keys[-1]

    # -- one example ----------------------------------------------------------------------

    def run(self, example: Example) -> Failure | None:
        runner: Callable[[Example], str | None] = {
            "python": self._python,
            "toml": self._toml,
            "json": self._json,
            "console": self._shell,
            **{lang: self._shell for lang in SHELL_LANGS},
        }[example.lang]
        try:
            message = runner(example)
        except subprocess.TimeoutExpired:
            message = f"did not finish in {EXAMPLE_TIMEOUT_S} s"
        return Failure(example.where, message) if message else None

    def _python(self, example: Example) -> str | None:
        script = self.cwd / f"_docs_example_{example.line}.py"
        script.write_text(self.substitute(example.code), encoding="utf-8")
        returncode, out, err = self._run([sys.executable, script.name])
        if returncode == 0:
            return None
        lines = re.findall(rf'File ".*{re.escape(script.name)}", line (\d+)', err)
        at = f" (page line {example.line + int(lines[-1]) - 1})" if lines else ""
        return f"python example failed{at}:\n{_tail(err or out)}"

    def _toml(self, example: Example) -> str | None:
        from memmesh.config import load_settings
        from memmesh.errors import ConfigError

        path = self.cwd / f"_docs_example_{example.line}.toml"
        path.write_text(example.code, encoding="utf-8")
        try:
            load_settings(path, env={})
        except ConfigError as exc:
            return f"the config loader refuses this TOML: {exc.message}"
        return None

    def _json(self, example: Example) -> str | None:
        try:
            data = json.loads(example.code)
        except json.JSONDecodeError as exc:
            return f"not valid JSON (block line {exc.lineno}): {exc.msg}"
        target = example.markers.get("validate")
        return validate_shape(data, target) if target else None

    def _shell(self, example: Example) -> str | None:
        for segment_line, segment, serve_line in shell_segments(example):
            if segment.strip():
                failure = self._bash(example, segment_line, segment)
                if failure:
                    return failure
            if serve_line is not None:
                failure = self.start_server(serve_line)
                if failure:
                    return failure
        return None

    def _bash(self, example: Example, first_line: int, script: str) -> str | None:
        preamble = (
            "set -eo pipefail\n"
            'curl() { local rc=0; command curl --fail-with-body --silent --show-error "$@" || rc=$?; echo; return $rc; }\n'
            "trap 'echo \"docs-test: failed at page line $__docs_line\" >&2' ERR\n"
        )
        body = []
        for offset, line in enumerate(script.splitlines()):
            if line.strip() and not line.startswith((" ", "\t")) and not _continues(script.splitlines(), offset):
                body.append(f"__docs_line={first_line + offset}")
            body.append(line)
        returncode, out, err = self._run(["bash", "-c", preamble + self.substitute("\n".join(body)) + "\n"])
        if returncode == 0:
            return None
        at = re.search(r"docs-test: failed at page line (\d+)", err)
        where = f" at page line {at[1]}" if at else ""
        return f"shell example exited {returncode}{where}:\n{_tail(out + err)}"

    def _run(self, argv: list[str]) -> tuple[int, str, str]:
        """Run one example in the page's folder and environment (no stdin, bounded time);
        its stdout is noted for the blocks that show output."""
        proc = subprocess.run(argv, cwd=self.cwd, env=self.env, capture_output=True, stdin=subprocess.DEVNULL, timeout=EXAMPLE_TIMEOUT_S)
        out, err = proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
        self.note_output(out)
        return proc.returncode, out, err

    # -- the page's server ----------------------------------------------------------------

    def start_server(self, line: str) -> str | None:
        self.stop_server()
        args = shlex.split(self.substitute(line), comments=True)
        if args and args[-1] == "&":  # "memmesh serve &": the harness runs it in the background anyway
            args.pop()
        if "--port" in args:
            args[args.index("--port") + 1] = str(self.port)
        else:
            args += ["--port", str(self.port)]
        log = self.server_log.open("ab")
        self.server = subprocess.Popen(args, cwd=self.cwd, env=self.env, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                return f"`{line.strip()}` exited with {self.server.returncode}:\n{_tail(self.server_log.read_text(errors='replace'))}"
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                    return None
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        return f"`{line.strip()}` did not answer /healthz within 60 s"

    def stop_server(self) -> None:
        if self.server is None:
            return
        if self.server.poll() is None:
            os.killpg(self.server.pid, signal.SIGTERM)
            try:
                self.server.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.server.pid, signal.SIGKILL)
                self.server.wait()
        self.server = None


def _continues(lines: list[str], offset: int) -> bool:
    """Whether line ``offset`` continues the previous one (a trailing backslash)."""
    return offset > 0 and lines[offset - 1].rstrip().endswith("\\")


def shell_segments(example: Example) -> Iterator[tuple[int, str, str | None]]:
    """(first page line, bash text, serve command line or None) pieces of a shell block.

    A ``console`` block keeps only its ``$ `` commands (and their continuation lines); every
    ``memmesh serve`` command ends a segment, since the harness runs it in the background.
    """
    lines = example.code.splitlines()
    kept: list[tuple[int, str]] = []
    in_command = False
    for offset, line in enumerate(lines):
        if example.lang == "console":
            if line.startswith("$ "):
                kept.append((offset, line[2:]))
                in_command = line.rstrip().endswith("\\")
            elif in_command:
                kept.append((offset, line))
                in_command = line.rstrip().endswith("\\")
            else:
                kept.append((offset, ""))  # output: keeps the line numbers
        else:
            kept.append((offset, line))
    segment: list[str] = []
    first = 0
    for offset, line in kept:
        if _SERVE.match(line.strip()) and not line.startswith((" ", "\t")):
            yield example.line + first, "\n".join(segment), line
            segment, first = [], offset + 1
        else:
            segment.append(line)
    yield example.line + first, "\n".join(segment), None


def validate_shape(data: Any, target: str) -> str | None:
    """Check ``data`` against the pydantic model at ``target``: it validates, and names no
    field the model does not have (a documented key that does not exist is drift too)."""
    module_name, _, name = target.rpartition(".")
    try:
        model = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError):
        return f"validate marker names {target!r}, which cannot be imported"
    from pydantic import ValidationError

    try:
        model.model_validate(data)
    except ValidationError as exc:
        return f"does not match {name}: {exc}"
    unknown = _unknown_keys(data, model)
    return f"keys {unknown} are not fields of {name}" if unknown else None


def _unknown_keys(data: Any, model: Any, prefix: str = "") -> list[str]:
    if not isinstance(data, dict) or not hasattr(model, "model_fields"):
        return []
    out: list[str] = []
    for key, value in data.items():
        info = model.model_fields.get(key)
        if info is None:
            out.append(prefix + key)
            continue
        sub = info.annotation
        for candidate in (sub, *getattr(sub, "__args__", ())):
            if hasattr(candidate, "model_fields"):
                out += _unknown_keys(value, candidate, f"{prefix}{key}.")
            elif isinstance(value, list):
                inner = [a for a in getattr(candidate, "__args__", ()) if hasattr(a, "model_fields")]
                for item in value:
                    for model_in_list in inner:
                        out += _unknown_keys(item, model_in_list, f"{prefix}{key}[].")
    return out


def _seed_model_cache(cache: Path) -> None:
    """Reuse an already built ONNX graph (CI runs ``memmesh models install`` first), so each
    page does not spend seconds rebuilding it; without one the page builds its own."""
    from memmesh.config import load_settings
    from memmesh.errors import ConfigError

    try:
        real = load_settings(None, env={k: v for k, v in os.environ.items() if k.startswith("MEMMESH_")}).cache_dir / "models"
    except ConfigError:  # a broken user config must not stop the docs tests
        return
    if real.is_dir():
        (cache / "models").mkdir(parents=True, exist_ok=True)
        for built in real.iterdir():
            target = cache / "models" / built.name
            if not target.exists():
                target.symlink_to(built) if built.suffix == ".onnx" else target.write_bytes(built.read_bytes())


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join("    " + line for line in text.rstrip().splitlines()[-lines:])


def run_page(page: Path, setup: Callable[[PageRun], None] | None = None) -> tuple[list[Failure], list[str]]:
    """Run every example of ``page`` in order; (failures, skipped ``where: reason``)."""
    failures: list[Failure] = []
    skipped: list[str] = []
    with tempfile.TemporaryDirectory(prefix="memmesh-docs-") as tmp:
        run = PageRun(page, Path(tmp))
        try:
            if setup:
                setup(run)
            for example in collect(page):
                if not example.runs:
                    continue
                if example.skip_reason:
                    skipped.append(f"{example.where}: {example.skip_reason}")
                    continue
                failure = run.run(example)
                if failure:
                    failures.append(failure)
        finally:
            run.stop_server()
    return failures, skipped
