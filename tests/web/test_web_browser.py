"""The web inspector end to end: headless Chromium (Debian's, via Selenium) against ``memmesh serve``.

One server and one browser for the module (starting Chromium costs seconds); the tests run in
order, like a user's session: log in, search, open a memory, edit it, approve a pending
action, switch to a scoped key, and try a forged form. Every page visited is saved as a
screenshot under the test's tmp dir, and under ``$MEMMESH_SCREENSHOTS`` when it is set.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from web_support import Served, chromium, close_browser, web_settings

from memmesh.compose import build
from memmesh.errors import PendingApprovalError
from memmesh.model import LOCAL_PRINCIPAL

pytestmark = pytest.mark.xdist_group("web_browser_tour")
"""The tests share one browser session and run in order: on one xdist worker (``--dist loadgroup``)."""


@dataclass
class Tour:
    server: Served
    browser: Any
    shots: list[Path]
    ids: dict[str, str]

    def open(self, path: str) -> None:
        self.browser.get(self.server.url + path)

    def shot(self, name: str) -> Path:
        """Save the page as it looks now (the run's tmp dir, and $MEMMESH_SCREENSHOTS if set)."""
        folder = self.shots[0]
        path = folder / f"{len(self.shots):02d}-{name}.png"
        assert self.browser.save_screenshot(str(path)), f"no screenshot of {name}"
        self.shots.append(path)
        extra = os.environ.get("MEMMESH_SCREENSHOTS")
        if extra:
            Path(extra).mkdir(parents=True, exist_ok=True)
            (Path(extra) / path.name).write_bytes(path.read_bytes())
        return path

    def css(self, selector: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.browser.find_element(By.CSS_SELECTOR, selector)

    def api(self, path: str, key: str) -> httpx.Response:
        return httpx.get(self.server.url + path, headers={"Authorization": f"Bearer {key}"}, timeout=30)

    def click(self, element: Any) -> None:
        """Click something that loads a new page, and wait until the new page is there."""
        old = self.css("html")
        element.click()
        self.wait_replaced(old)

    def wait_replaced(self, old: Any) -> None:
        """Wait until the page that held ``old`` (its ``html`` element) has been replaced.

        Selenium's ``staleness_of`` expects StaleElementReferenceException; while the old page
        is being torn down Chromium (150) may answer "Node with given id does not belong to the
        document" instead, which failed a CI run. Both mean the old page is gone."""
        from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
        from selenium.webdriver.support.ui import WebDriverWait

        def replaced(_: Any) -> bool:
            try:
                old.is_enabled()
            except StaleElementReferenceException:
                return True
            except WebDriverException as exc:
                if "does not belong to the document" in str(exc):
                    return True
                raise
            return False

        WebDriverWait(self.browser, 30).until(replaced)

    def login(self, key: str) -> None:
        self.open("/ui/login")
        self.css("#key").send_keys(key)
        self.click(self.css("form.stack button[type=submit]"))


def _seed(folder: Path) -> dict[str, str]:
    """Memories, a link, a governed namespace with one pending delete, and keys; then closed."""
    service = build(web_settings(folder))
    try:
        add = service.add
        deploy = add({"content": "the deploy key rotates on mondays", "namespace": "team/a", "tags": ["ops"]}, principal=LOCAL_PRINCIPAL)
        runbook = add(
            {"content": "rotate keys with the vault runbook", "namespace": "team/a", "title": "runbook"}, principal=LOCAL_PRINCIPAL
        )
        payroll = add({"content": "payroll runs on fridays", "namespace": "team/b"}, principal=LOCAL_PRINCIPAL)
        doomed = add({"content": "the old staging cluster is retired", "namespace": "team/gov"}, principal=LOCAL_PRINCIPAL)
        service.link(deploy.id, runbook.id, "related_to", principal=LOCAL_PRINCIPAL)
        service.link(deploy.id, payroll.id, "related_to", principal=LOCAL_PRINCIPAL)
        service.governance.set_standard("team/gov", governance={"delete": "approve"}, principal=LOCAL_PRINCIPAL)
        writer = service.create_key("wes", role="writer", namespaces=["team/gov"], principal=LOCAL_PRINCIPAL)
        try:
            service.delete(doomed.id, principal=service.authenticate(writer.key))
        except PendingApprovalError as queued:
            pending = str(queued.details["pending_id"])
        admin = service.create_key("ada", role="admin", principal=LOCAL_PRINCIPAL)
        scoped = service.create_key("alice", role="writer", namespaces=["team/a"], principal=LOCAL_PRINCIPAL)
        revoked = service.create_key("rex", role="admin", principal=LOCAL_PRINCIPAL)
        service.revoke_key(revoked.id, principal=LOCAL_PRINCIPAL)
    finally:
        service.close()
    return {
        "deploy": deploy.id,
        "payroll": payroll.id,
        "doomed": doomed.id,
        "pending": pending,
        "admin": admin.key,
        "scoped": scoped.key,
        "revoked": revoked.key,
    }


@pytest.fixture(scope="module")
def tour(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tour]:
    folder = tmp_path_factory.mktemp("webtour")
    ids = _seed(folder)
    server = Served(folder)
    browser = None
    try:
        browser = chromium()
        shots = folder / "screenshots"
        shots.mkdir()
        yield Tour(server=server, browser=browser, shots=[shots], ids=ids)
    finally:
        if browser is not None:
            close_browser(browser)
        server.stop()


def test_login_with_a_revoked_key_is_refused(tour: Tour) -> None:
    tour.open("/ui/memories")
    assert tour.browser.current_url.startswith(tour.server.url + "/ui/login")  # keys exist: log in first
    tour.shot("login")
    tour.login(tour.ids["revoked"])
    assert "revoked" in tour.css("#error-message").text.lower()
    tour.shot("login-revoked")


def test_search_open_edit_and_see_the_change_through_the_api(tour: Tour) -> None:
    from selenium.webdriver.common.keys import Keys

    tour.login(tour.ids["admin"])
    assert tour.browser.current_url.endswith("/ui/memories")
    tree = tour.css("#tree").text
    assert "team" in tree and "gov" in tree
    tour.shot("memories")
    box = tour.css("#q")
    old = tour.css("html")
    box.send_keys("deploy key", Keys.ENTER)  # a real form submit, by keyboard
    tour.wait_replaced(old)
    results = tour.css("#results")
    assert "the deploy key rotates on mondays" in results.text
    assert "bm25" in results.text.lower() or "keyword" in results.text.lower()  # the score breakdown (explain)
    tour.shot("search")
    tour.click(results.find_element("link text", "the deploy key rotates on mondays"))
    assert tour.css("#content").text == "the deploy key rotates on mondays"
    assert "runbook" in tour.css("#links").text and tour.css("svg.graph")
    tour.shot("memory")
    content = tour.css("#edit-content")
    content.clear()
    content.send_keys("the deploy key rotates on tuesdays")
    tour.click(tour.css("#save"))
    assert tour.css("#done").text == "saved"
    assert tour.css("#content").text == "the deploy key rotates on tuesdays"
    assert "tuesdays" in tour.css("#history ins").text
    tour.shot("memory-edited")
    seen = tour.api(f"/api/v1/memories/{tour.ids['deploy']}", tour.ids["admin"]).json()
    assert seen["content"] == "the deploy key rotates on tuesdays"


def test_approve_a_pending_action(tour: Tour) -> None:
    tour.open("/ui/pending")
    row = tour.css(f"#pending-{tour.ids['pending']}")
    assert "delete" in row.text and "team/gov" in row.text
    tour.shot("pending")
    tour.click(row.find_element("css selector", "button.approve"))
    assert tour.css("#done").text == "approved"
    assert tour.api(f"/api/v1/memories/{tour.ids['doomed']}", tour.ids["admin"]).status_code == 404
    tour.open("/ui/pending?status=applied")
    assert tour.ids["pending"] in tour.css("#pending").text
    tour.shot("pending-applied")


def test_every_section_renders(tour: Tour) -> None:
    for section, probe in [
        ("namespaces", "#namespaces"),
        ("audit", "#audit"),
        ("curator", "#runs"),
        ("cluster", "h1"),
        ("bus", "#conversations"),
        ("metrics", "h1"),
    ]:
        tour.click(tour.css(f'nav a[href="/ui/{section}"]'))  # the nav, as a user moves around
        assert tour.browser.current_url.endswith(f"/ui/{section}")
        assert tour.css(probe).is_displayed()
        tour.shot(section)
    tour.open("/ui/audit")
    tour.click(tour.css("#verify"))
    assert "Chain intact" in tour.css("#chain-status").text
    tour.shot("audit-verified")


def test_a_forged_form_is_refused_in_the_browser(tour: Tour) -> None:
    deploy = tour.ids["deploy"]
    tour.open(f"/ui/memories/{deploy}")
    tour.browser.execute_script("document.querySelector('#edit-form input[name=csrf]').value = 'forged'")
    tour.css("#edit-content").clear()
    tour.css("#edit-content").send_keys("forged content")
    tour.click(tour.css("#save"))
    assert "CSRF" in tour.css("#error-message").text
    tour.shot("csrf-refused")
    assert tour.api(f"/api/v1/memories/{deploy}", tour.ids["admin"]).json()["content"] == "the deploy key rotates on tuesdays"


def test_a_scoped_key_cannot_see_another_namespace(tour: Tour) -> None:
    tour.open("/ui/memories")
    tour.click(tour.css("header form button[type=submit]"))  # log out
    assert tour.browser.current_url.startswith(tour.server.url + "/ui/login")
    tour.login(tour.ids["scoped"])
    listing = tour.browser.page_source
    assert "tuesdays" in listing and "payroll" not in listing and "team/b" not in listing and "gov" not in tour.css("#tree").text
    tour.shot("scoped-memories")
    tour.open(f"/ui/memories/{tour.ids['payroll']}")
    assert "no memory with id" in tour.css("#error-message").text
    assert tour.css("h1").text.startswith("404")
    tour.shot("scoped-404")
    tour.open(f"/ui/memories/{tour.ids['deploy']}")
    assert "payroll" not in tour.browser.page_source  # the link into team/b is not drawn either
    assert len(tour.shots) > 15 and all(p.stat().st_size > 1000 for p in tour.shots[1:])


def test_dark_mode_follows_the_system_setting_and_focus_is_visible(tour: Tour) -> None:
    from selenium.webdriver.common.keys import Keys

    def background() -> str:
        return str(tour.browser.execute_script("return getComputedStyle(document.body).backgroundColor"))

    tour.open("/ui/memories")
    light = background()
    tour.browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    try:
        tour.open("/ui/memories")
        dark = background()
        assert light == "rgb(255, 255, 255)" and dark == "rgb(21, 24, 28)"
        tour.css("body").send_keys(Keys.TAB)  # the skip link first, then the nav: all reachable by keyboard
        focused = tour.browser.switch_to.active_element
        assert focused.text == "Skip to content"
        assert tour.browser.execute_script("return getComputedStyle(arguments[0]).outlineStyle", focused) == "solid"
        tour.shot("memories-dark")
    finally:
        tour.browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "light"}]})
