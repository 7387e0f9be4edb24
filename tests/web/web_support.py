"""Servers and browsers for the web inspector's tests.

:class:`InProcess` runs the HTTP app (with ``/ui`` mounted) on uvicorn in a thread of the
test process, so a test can arrange state through the same Service; :class:`Served` runs
``memmesh serve`` as a subprocess, the way a user starts it, for the browser tests.
:func:`chromium` starts Debian's headless Chromium through chromedriver, installing both with
``scripts/install_browser.py`` when they are missing: a test that cannot get a browser fails.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from memmesh.compose import build
from memmesh.config import Settings, load_settings
from memmesh.interfaces.http.app import create_app
from memmesh.service import Service

ROOT = Path(__file__).resolve().parents[2]
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def web_settings(folder: Path, **sections: dict[str, Any]) -> Settings:
    data: dict[str, Any] = {
        "data_dir": str(folder),
        "embeddings": {"provider": "none"},
        "storage": {"url": f"sqlite:///{folder / 'memmesh.db'}"},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return load_settings(None, overrides=data, env={})


class InProcess:
    """The app on a real uvicorn on 127.0.0.1, in a thread; ``service`` arranges state."""

    def __init__(self, settings: Settings) -> None:
        self.service: Service = build(settings)
        self.app = create_app(self.service, settings)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.02)

    def browser(self) -> httpx.Client:
        """A cookie-keeping client, like a browser tab (no redirects followed unless asked)."""
        return httpx.Client(base_url=self.url, timeout=30)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)
        self.sock.close()
        self.service.close()


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Served:
    """``memmesh serve`` in a subprocess on a free loopback port."""

    def __init__(self, folder: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / f"server-{self.port}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
        (folder / "empty.toml").write_text("")
        env.update(
            {"MEMMESH_DATA_DIR": str(folder / "data"), "MEMMESH_CONFIG": str(folder / "empty.toml"), "MEMMESH_EMBEDDINGS_PROVIDER": "none"}
        )
        self.env = env
        self.db = folder / "memmesh.db"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "memmesh.interfaces.cli.app", "serve", "--db", str(self.db), "--port", str(self.port), *args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"memmesh serve exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"memmesh serve did not become ready: {self.log.read_text()[-2000:]}")

    def cli(self, *args: str) -> str:
        """Run a memmesh command on the served store (keys, for instance)."""
        done = subprocess.run(
            [sys.executable, "-m", "memmesh.interfaces.cli.app", *args, "--db", str(self.db)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1000",
)


def ensure_browser() -> tuple[str, str]:
    """Chromium and chromedriver paths, installed from Debian's mirror when missing (fails loudly)."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "install_browser.py"), "ensure"], capture_output=True, text=True, timeout=1800
    )
    assert done.returncode == 0, f"no browser for the web tests: {done.stderr[-2000:]}"
    chromium, driver = done.stdout.strip().splitlines()[-1].split()
    return chromium, driver


def chromium() -> Any:
    """A headless Chromium driven by Selenium, with a fresh profile directory."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    binary, driver = ensure_browser()
    profile = tempfile.mkdtemp(prefix="memmesh-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    made = webdriver.Chrome(options=options, service=DriverService(executable_path=driver))
    made.set_page_load_timeout(60)
    made._memmesh_profile = profile  # removed by close_browser
    return made


def close_browser(browser: Any) -> None:
    profile = getattr(browser, "_memmesh_profile", None)
    browser.quit()
    if profile:
        shutil.rmtree(profile, ignore_errors=True)
