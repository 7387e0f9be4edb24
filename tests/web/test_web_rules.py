"""The web inspector's rules, over real HTTP without a browser: sessions, CSRF, scopes, errors.

Every page calls the service as the session's principal, so these tests check what a browser
user can and cannot do through /ui, and that a refused request changes nothing.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import uvicorn
from web_support import InProcess, csrf_of, web_settings

from memmesh.compose import build
from memmesh.interfaces.web import create_web_app
from memmesh.model import LOCAL_PRINCIPAL


def _seed(running: InProcess) -> tuple[str, str]:
    service = running.service
    a = service.add({"content": "the deploy key rotates on mondays", "namespace": "team/a", "tags": ["ops"]}, principal=LOCAL_PRINCIPAL)
    b = service.add({"content": "payroll runs on fridays", "namespace": "team/b"}, principal=LOCAL_PRINCIPAL)
    return a.id, b.id


def _login(client: httpx.Client, key: str) -> httpx.Response:
    page = client.get("/ui/login")
    return client.post("/ui/login", data={"csrf": csrf_of(page.text), "key": key})


def test_open_loopback_server_acts_as_local_principal_and_sets_a_strict_cookie(web: Callable[..., InProcess]) -> None:
    running = web()
    a, _b = _seed(running)
    with running.browser() as tab:
        page = tab.get("/ui/memories")
        assert page.status_code == 200
        assert "the deploy key rotates on mondays" in page.text and "payroll runs on fridays" in page.text
        cookie = page.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/ui" in cookie and "secure" not in cookie
        assert tab.get(f"/ui/memories/{a}").status_code == 200


def test_post_without_or_with_a_wrong_csrf_token_is_403_and_changes_nothing(web: Callable[..., InProcess]) -> None:
    running = web()
    a, _ = _seed(running)
    with running.browser() as tab:
        token = csrf_of(tab.get(f"/ui/memories/{a}").text)
        for form in ({"content": "hijacked"}, {"content": "hijacked", "csrf": "x" * len(token)}, {"content": "hijacked", "csrf": ""}):
            refused = tab.post(f"/ui/memories/{a}/edit", data=form)
            assert refused.status_code == 403, refused.text
            assert "CSRF token is missing or stale" in refused.text
        for action in ("delete", "promote"):
            assert tab.post(f"/ui/memories/{a}/{action}", data={}).status_code == 403
        done = tab.post(f"/ui/memories/{a}/edit", data={"content": "the deploy key rotates on tuesdays", "csrf": token})
        assert done.status_code == 303 and done.headers["location"].endswith("done=saved")
    # another browser (a cross-site form) with this browser's token but not its cookie: refused too
    with running.browser() as other:
        other.get("/ui/memories")
        assert other.post(f"/ui/memories/{a}/delete", data={"csrf": token}).status_code == 403
    api = httpx.get(f"{running.url}/api/v1/memories/{a}").json()
    assert api["content"] == "the deploy key rotates on tuesdays"  # only the good form changed it
    assert [h["event"] for h in httpx.get(f"{running.url}/api/v1/memories/{a}/history").json()] == ["add", "update"]


def test_a_cross_site_post_and_a_rebound_host_are_refused_before_the_page_runs(web: Callable[..., InProcess]) -> None:
    running = web()
    a, _ = _seed(running)
    with running.browser() as tab:
        token = csrf_of(tab.get(f"/ui/memories/{a}").text)
        cross = tab.post(f"/ui/memories/{a}/delete", data={"csrf": token}, headers={"Origin": "https://evil.example"})
        assert cross.status_code == 403
        rebound = tab.get("/ui/memories", headers={"Host": "evil.example"})
        assert rebound.status_code == 421
    assert httpx.get(f"{running.url}/api/v1/memories/{a}").status_code == 200


def test_keys_required_login_scope_and_logout(web: Callable[..., InProcess]) -> None:
    running = web()
    a, b = _seed(running)
    service = running.service
    scoped = service.create_key("alice", role="writer", namespaces=["team/a"], principal=LOCAL_PRINCIPAL)
    with running.browser() as tab:
        first = tab.get("/ui/memories?namespace=team/a")
        assert first.status_code == 303 and first.headers["location"] == "/ui/login?next=/ui/memories%3Fnamespace%3Dteam/a"
        wrong = _login(tab, "mm_not_a_key")
        assert wrong.status_code == 401 and "error-message" in wrong.text
        assert tab.get("/ui/memories").status_code == 303  # still not logged in
        done = _login(tab, scoped.key)
        assert done.status_code == 303
        assert scoped.key not in done.headers["set-cookie"]  # the cookie carries a session id, never the key
        listing = tab.get("/ui/memories")
        assert listing.status_code == 200
        assert "the deploy key rotates on mondays" in listing.text
        assert "payroll" not in listing.text and "team/b" not in listing.text  # another namespace: not even its name
        assert tab.get(f"/ui/memories/{b}").status_code == 404
        assert tab.get("/ui/memories?namespace=team/b").status_code == 403
        assert "team/b" not in tab.get("/ui/namespaces").text
        token = csrf_of(tab.get(f"/ui/memories/{a}").text)
        assert tab.post(f"/ui/memories/{b}/delete", data={"csrf": token}).status_code == 404
        assert service.get(b, principal=LOCAL_PRINCIPAL).content == "payroll runs on fridays"
        out = tab.post("/ui/logout", data={"csrf": token})
        assert out.status_code == 303
        assert tab.get("/ui/memories").status_code == 303  # logged out: back to the login form


def test_a_revoked_key_ends_its_session_at_the_next_request_and_cannot_log_in(web: Callable[..., InProcess]) -> None:
    running = web()
    _seed(running)
    service = running.service
    made = service.create_key("bob", role="admin", principal=LOCAL_PRINCIPAL)
    with running.browser() as tab:
        assert _login(tab, made.key).status_code == 303
        assert tab.get("/ui/memories").status_code == 200
        service.revoke_key(made.id, principal=LOCAL_PRINCIPAL)
        gone = tab.get("/ui/memories")
        assert gone.status_code == 303 and gone.headers["location"].startswith("/ui/login")
        again = _login(tab, made.key)
        assert again.status_code == 401 and "revoked" in again.text.lower()


def test_a_reader_gets_the_apis_403_on_a_page_form_and_nothing_changes(web: Callable[..., InProcess]) -> None:
    running = web()
    a, _ = _seed(running)
    reader = running.service.create_key("rita", role="reader", principal=LOCAL_PRINCIPAL)
    with running.browser() as tab:
        _login(tab, reader.key)
        token = csrf_of(tab.get(f"/ui/memories/{a}").text)
        refused = tab.post(f"/ui/memories/{a}/edit", data={"content": "changed by a reader", "csrf": token})
        assert refused.status_code == 403 and "error-message" in refused.text
        bad = tab.get("/ui/memories?tier=forever")
        assert bad.status_code == 422 and "tier" in bad.text
    assert running.service.get(a, principal=LOCAL_PRINCIPAL).content == "the deploy key rotates on mondays"


def test_approve_and_reject_need_an_approver_and_apply_through_the_core(web: Callable[..., InProcess]) -> None:
    running = web()
    a, _ = _seed(running)
    service = running.service
    service.governance.set_standard("team/a", governance={"delete": "approve"}, principal=LOCAL_PRINCIPAL)
    writer = service.create_key("wes", role="writer", namespaces=["team/a"], principal=LOCAL_PRINCIPAL)
    approver = service.create_key("ann", role="approver", namespaces=["team/a"], principal=LOCAL_PRINCIPAL)
    with running.browser() as tab:
        _login(tab, writer.key)
        token = csrf_of(tab.get(f"/ui/memories/{a}").text)
        queued = tab.post(f"/ui/memories/{a}/delete", data={"csrf": token})
        assert queued.status_code == 202 and "waits for an approver" in queued.text
        pending_id = service.governance.pending(principal=LOCAL_PRINCIPAL)[0].id
        assert pending_id in tab.get("/ui/pending").text
        refused = tab.post(f"/ui/pending/{pending_id}/approve", data={"csrf": token})
        assert refused.status_code == 403
        assert service.get(a, principal=LOCAL_PRINCIPAL)  # still there
    with running.browser() as tab:
        _login(tab, approver.key)
        token = csrf_of(tab.get("/ui/pending").text)
        done = tab.post(f"/ui/pending/{pending_id}/approve", data={"csrf": token, "reason": "ok"})
        assert done.status_code == 303
    assert httpx.get(f"{running.url}/api/v1/memories/{a}", headers={"Authorization": f"Bearer {approver.key}"}).status_code == 404
    assert service.governance.get_pending(pending_id, principal=LOCAL_PRINCIPAL).status == "applied"


def test_deleted_memory_page_offers_restore_and_history_diff(web: Callable[..., InProcess]) -> None:
    running = web()
    a, _ = _seed(running)
    with running.browser() as tab:
        token = csrf_of(tab.get(f"/ui/memories/{a}").text)
        tab.post(f"/ui/memories/{a}/edit", data={"csrf": token, "content": "the deploy key rotates on fridays", "tags": "ops, keys"})
        page = tab.get(f"/ui/memories/{a}").text
        assert "<del>mondays</del> <ins>fridays</ins>" in page and "keys" in page
        assert tab.post(f"/ui/memories/{a}/delete", data={"csrf": token}).status_code == 303
        deleted = tab.get(f"/ui/memories/{a}")
        assert deleted.status_code == 200 and 'id="restore"' in deleted.text
        assert tab.post(f"/ui/memories/{a}/restore", data={"csrf": token}).status_code == 303
    assert httpx.get(f"{running.url}/api/v1/memories/{a}").json()["content"] == "the deploy key rotates on fridays"


def test_store_wide_pages_refuse_a_scoped_admin(web: Callable[..., InProcess]) -> None:
    running = web()
    _seed(running)
    scoped_admin = running.service.create_key("sam", role="admin", namespaces=["team/a"], principal=LOCAL_PRINCIPAL)
    with running.browser() as tab:
        _login(tab, scoped_admin.key)
        for path in ("/ui/audit", "/ui/metrics"):
            assert tab.get(path).status_code == 403, path
        assert tab.get("/ui/memories").status_code == 200


def test_login_attempts_count_against_the_address_rate(web: Callable[..., InProcess]) -> None:
    running = web(limits={"rate_limit_per_minute": 3})
    made = running.service.create_key("gus", role="reader", principal=LOCAL_PRINCIPAL)
    with running.browser() as tab:
        statuses = [_login(tab, "mm_guess_" + str(n)).status_code for n in range(4)]
        assert statuses[:3] == [401, 401, 401] and statuses[3] == 429
        refused = _login(tab, made.key)  # even the right key waits: the address is over its rate
        assert refused.status_code == 429 and "too many login attempts" in refused.text


def _state(running: InProcess) -> tuple[dict[str, object], list[str]]:
    items = running.service.list(limit=100, principal=LOCAL_PRINCIPAL).items
    memories = {m.id: m.model_dump(mode="json", exclude={"updated_at", "version"}) for m in items}
    links = sorted(str(link.model_dump(mode="json")) for m in items for link in running.service.links(m.id, principal=LOCAL_PRINCIPAL))
    return memories, links


def test_curator_rollback_button_undoes_a_run(web: Callable[..., InProcess]) -> None:
    running = web()
    for text in (
        "The deploy window is Tuesday afternoon.",
        "Our deploy window is on Tuesday afternoon.",
        "The conference room holds 12 people.",
        "The conference room holds 20 people.",
    ):
        running.service.add({"content": text, "namespace": "office"}, principal=LOCAL_PRINCIPAL)
    before = _state(running)
    report = running.service.curator.run(principal=LOCAL_PRINCIPAL)
    assert _state(running) != before  # the run changed something to roll back
    with running.browser() as tab:
        page = tab.get("/ui/curator")
        assert report.run_id in page.text and "Roll back" in page.text
        token = csrf_of(page.text)
        assert tab.post(f"/ui/curator/{report.run_id}/rollback", data={}).status_code == 403  # no token: nothing undone
        assert _state(running) != before
        done = tab.post(f"/ui/curator/{report.run_id}/rollback", data={"csrf": token})
        assert done.status_code == 303
        assert "rolled back" in tab.get("/ui/curator").text
        again = tab.post(f"/ui/curator/{report.run_id}/rollback", data={"csrf": token})
        assert again.status_code == 409 and "error-message" in again.text  # the core's conflict, as a page
    assert _state(running) == before


def test_metrics_page_charts_what_the_sampler_collected(web: Callable[..., InProcess]) -> None:
    from memmesh.interfaces.web.samples import Sampler

    running = web()
    _seed(running)
    sampler = Sampler(running.service, running.app.state.memmesh.metrics.registry, interval=3600)
    sampler.sample()
    for _ in range(5):
        assert httpx.get(f"{running.url}/api/v1/memories").status_code == 200
    httpx.post(f"{running.url}/api/v1/recall", json={"query": "deploy key"}).raise_for_status()
    point = sampler.sample()
    assert point.memories == 2 and point.requests_per_s > 0 and point.recall_ms > 0
    with running.browser() as tab:
        page = tab.get("/ui/metrics")
        assert page.status_code == 200  # the app's own sampler (every 5 s): a chart, or "collecting samples" before the second
        assert all(label in page.text for label in ("live memories", "API requests", "recall latency"))


def test_the_cookie_is_secure_when_the_server_has_tls(tmp_path: Path) -> None:
    """``secure`` is what create_app passes when [tls] cert_file is set; served here on plain
    HTTP only to read the header the browser would get."""
    settings = web_settings(tmp_path)
    service = build(settings)
    app = create_web_app(service, settings, require_auth=False, secure=True)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.02)
        page = httpx.get(f"http://127.0.0.1:{sock.getsockname()[1]}/memories", timeout=30)
        assert page.status_code == 200
        cookie = page.headers["set-cookie"].lower()
        assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    finally:
        server.should_exit = True
        thread.join(20)
        sock.close()
        service.close()


def test_filters_paging_and_hybrid_search(web: Callable[..., InProcess]) -> None:
    running = web()
    service = running.service
    for n in range(12):
        tier = "long" if n % 2 else "short"
        service.add(
            {"content": f"note {n:02d} about the release train", "namespace": "rel", "tags": [f"t{n % 3}"], "tier": tier},
            principal=LOCAL_PRINCIPAL,
        )
    with running.browser() as tab:
        first = tab.get("/ui/memories?limit=10")
        assert first.status_code == 200 and first.text.count('href="/ui/memories/') == 10
        nxt = re.search(r'href="([^"]*cursor=[^"]+)" id="next"', first.text)
        assert nxt is not None and nxt.group(1)
        second = tab.get(nxt.group(1).replace("&amp;", "&"))
        shown = set(re.findall(r"note (\d\d) about", first.text)) | set(re.findall(r"note (\d\d) about", second.text))
        assert second.text.count('href="/ui/memories/') == 2 and len(shown) == 12  # every memory once, over two pages
        tagged = tab.get("/ui/memories?tags=t1&tier=long")
        found = set(re.findall(r"note (\d\d) about", tagged.text))
        assert found == {f"{n:02d}" for n in range(12) if n % 3 == 1 and n % 2}
        hybrid = tab.get("/ui/memories?q=release+train&mode=hybrid")
        assert hybrid.status_code == 200 and "hits for" in hybrid.text and "keyword_norm" in hybrid.text
        assert tab.get("/ui/memories?q=x&mode=vector").status_code == 422


def test_a_flood_of_anonymous_sessions_does_not_log_anyone_out(tmp_path: Path) -> None:
    from memmesh.interfaces.web.auth import Sessions

    sessions = Sessions(tmp_path / "web_sessions.db", limit=3)
    logged_in = sessions.create("key-id")
    made = [sessions.create(None) for _ in range(10)]  # login forms opened over and over
    assert sessions.get(logged_in.id) == logged_in
    assert sessions.get(made[-1].id) is not None and sessions.get(made[0].id) is None
    sessions.close()


def test_bus_page_shows_metadata_never_bodies_and_namespaces_show_standards(web: Callable[..., InProcess]) -> None:
    running = web()
    service = running.service
    chat = service.bus.open(["planner", "coder"], topic="release plan", principal=LOCAL_PRINCIPAL)
    service.bus.send(chat.id, "the launch code is swordfish", sender="planner", token=chat.token, principal=LOCAL_PRINCIPAL)
    service.governance.set_standard("team/a", governance={"delete": "approve"}, required_tags=["owner"], principal=LOCAL_PRINCIPAL)
    with running.browser() as tab:
        bus = tab.get("/ui/bus").text
        assert chat.id in bus and "release plan" in bus and "planner, coder" in bus
        assert "swordfish" not in bus and chat.token not in bus  # no body, no token
        spaces = tab.get("/ui/namespaces").text
        assert "delete: approve" in spaces and "owner" in spaces


def test_login_redirects_only_inside_the_inspector(web: Callable[..., InProcess]) -> None:
    running = web()
    made = running.service.create_key("nia", role="reader", principal=LOCAL_PRINCIPAL)
    for wanted, landed in [
        ("/ui/namespaces", "/ui/namespaces"),
        ("https://evil.example/x", "/ui/memories"),
        ("//evil.example/ui/", "/ui/memories"),
        ("/ui/../..//evil.example", "/ui/memories"),
        ("/ui/\\\\evil.example", "/ui/memories"),
    ]:
        with running.browser() as tab:
            page = tab.get("/ui/login", params={"next": wanted})
            done = tab.post("/ui/login", params={"next": wanted}, data={"csrf": csrf_of(page.text), "key": made.key})
            assert done.status_code == 303 and done.headers["location"] == landed, wanted


def test_a_data_dir_the_server_cannot_write_is_a_503_naming_the_session_file(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the data dir should be")
    settings = web_settings(tmp_path).model_copy(update={"data_dir": blocker})  # the store stays in tmp_path
    running = InProcess(settings)
    try:
        with running.browser() as tab:
            refused = tab.get("/ui/login")
            assert refused.status_code == 503
            assert str(blocker / "web_sessions.db") in refused.text and "MEMMESH_DATA_DIR" in refused.text
            assert running.service.stats(principal=LOCAL_PRINCIPAL).total == 0  # the store itself is untouched and serving
    finally:
        running.stop()
