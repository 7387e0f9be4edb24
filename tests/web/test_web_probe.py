"""The web inspector probed as an attacker and as a new user, over real HTTP (no browser).

Each test here came from a probe of /ui: stored markup in every field a page shows, a key
scoped to one namespace reaching for another through every URL and form, text planted in
the URL shown as if the server said it, bytes that are not UTF-8, odd ids and filters on an
empty store. Refused requests must answer a clear status and change nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from web_support import InProcess, csrf_of

from memmesh.errors import PendingApprovalError
from memmesh.model import LOCAL_PRINCIPAL

MARKUP = ["<script>alert(1)</script>", '"><img src=x onerror=alert(2)>', "<svg onload=alert(3)>"]
PAGES = ("memories", "namespaces", "pending", "audit", "curator", "cluster", "bus", "metrics")


def _login(tab: httpx.Client, key: str) -> None:
    page = tab.get("/ui/login")
    done = tab.post("/ui/login", data={"csrf": csrf_of(page.text), "key": key})
    assert done.status_code == 303, done.text


def test_planted_done_text_is_not_shown_only_the_outcomes_forms_redirect_with(web: Callable[..., InProcess]) -> None:
    running = web()
    made = running.service.add({"content": "the deploy key rotates on mondays", "namespace": "team/a"}, principal=LOCAL_PRINCIPAL)
    planted = "your session expired: log in again at https://evil.example"
    with running.browser() as tab:
        for path in (f"/ui/memories/{made.id}", "/ui/memories", "/ui/pending", "/ui/curator"):
            page = tab.get(path, params={"done": planted})
            assert page.status_code == 200
            assert "evil.example" not in page.text and 'role="status"' not in page.text, path
        token = csrf_of(tab.get(f"/ui/memories/{made.id}").text)
        saved = tab.post(f"/ui/memories/{made.id}/edit", data={"csrf": token, "content": "the deploy key rotates on tuesdays"})
        assert saved.status_code == 303
        shown = tab.get(saved.headers["location"])
        assert '<p class="notice" role="status" id="done">saved</p>' in shown.text  # a real outcome is still shown
        listing = tab.get("/ui/memories", params={"limit": "10", "done": "saved"})
        assert "done=" not in listing.text  # paging links do not carry a notice along


def test_a_form_or_query_that_is_not_utf8_is_422_and_saves_nothing(web: Callable[..., InProcess]) -> None:
    running = web()
    made = running.service.add({"content": "payroll runs on fridays", "namespace": "team/a"}, principal=LOCAL_PRINCIPAL)
    form_type = {"content-type": "application/x-www-form-urlencoded"}
    with running.browser() as tab:
        token = csrf_of(tab.get(f"/ui/memories/{made.id}").text)
        for body in (f"csrf={token}&content=pay%FFroll".encode(), b"csrf=" + token.encode() + b"&content=pay\xffroll"):
            refused = tab.post(f"/ui/memories/{made.id}/edit", content=body, headers=form_type)
            assert refused.status_code == 422, refused.text
            assert "not valid UTF-8" in refused.text
        search = tab.get("/ui/memories?q=pay%FFroll")
        assert search.status_code == 422 and "query string is not valid UTF-8" in search.text
        login = tab.post("/ui/login", content=b"csrf=x&key=mm_%FF", headers=form_type)
        assert login.status_code == 422 and "not valid UTF-8" in login.text
        fine = tab.get("/ui/memories", params={"q": "payroll é"})  # real UTF-8 is fine
        assert fine.status_code == 200
    after = running.service.get(made.id, principal=LOCAL_PRINCIPAL)
    assert after.content == "payroll runs on fridays" and after.version == made.version
    assert [h.event for h in running.service.history(made.id, principal=LOCAL_PRINCIPAL)] == ["add"]


def test_markup_stored_in_any_field_is_escaped_on_every_page_and_in_the_graph(web: Callable[..., InProcess]) -> None:
    running = web()
    service = running.service
    script, attribute, svg = MARKUP
    first = service.add(
        {"content": f"{script} deploy notes", "title": attribute, "tags": [svg], "metadata": {attribute: script}, "namespace": "team/a"},
        principal=LOCAL_PRINCIPAL,
    )
    second = service.add({"content": f"{svg} deploy runbook", "agent_id": "ops-bot", "namespace": "team/a"}, principal=LOCAL_PRINCIPAL)
    service.link(first.id, second.id, "related_to", principal=LOCAL_PRINCIPAL)
    service.update(second.id, {"content": f"{attribute} deploy runbook v2", "title": script}, principal=LOCAL_PRINCIPAL)
    service.bus.open(["planner", "coder"], topic=f"{script} plan", principal=LOCAL_PRINCIPAL)
    service.governance.set_standard("team/q", governance={"write": "approve"}, principal=LOCAL_PRINCIPAL)
    queued = service.governance.pending(principal=LOCAL_PRINCIPAL)
    with pytest.raises(PendingApprovalError):
        service.add({"content": f"{script} queued note", "title": attribute, "namespace": "team/q"}, principal=LOCAL_PRINCIPAL)
    assert len(service.governance.pending(principal=LOCAL_PRINCIPAL)) == len(queued) + 1  # the pending page has markup to show
    with running.browser() as tab:
        paths = [f"/ui/{name}" for name in PAGES] + [
            f"/ui/memories/{first.id}",
            f"/ui/memories/{second.id}",
            "/ui/memories?q=deploy",
            "/ui/memories?q=deploy&mode=hybrid",
            f"/ui/memories?q={script}",
        ]
        for path in paths:
            page = tab.get(path)
            assert page.status_code == 200, path
            for raw in MARKUP:
                assert raw not in page.text, (path, raw)
        assert "queued note" in tab.get("/ui/pending").text and "&lt;script&gt;" in tab.get("/ui/bus").text
        graph = tab.get(f"/ui/memories/{first.id}").text
        assert 'class="graph"' in graph and "&lt;script&gt;" in graph  # the graph is drawn, its labels escaped
        assert "&lt;svg onload=alert(3)&gt;" in graph


def test_a_scoped_key_reaches_no_other_namespace_through_any_url_or_form(web: Callable[..., InProcess]) -> None:
    running = web()
    service = running.service
    mine = service.add({"content": "alpha visible note", "namespace": "team/a"}, principal=LOCAL_PRINCIPAL)
    theirs = service.add({"content": "zebra payroll figures", "namespace": "team/b", "tags": ["zebratag"]}, principal=LOCAL_PRINCIPAL)
    gone = service.add({"content": "zebra deleted plan", "namespace": "team/b"}, principal=LOCAL_PRINCIPAL)
    service.delete(gone.id, principal=LOCAL_PRINCIPAL)
    moved = service.add({"content": "was in a", "namespace": "team/a"}, principal=LOCAL_PRINCIPAL)
    service.update(moved.id, {"namespace": "team/b", "content": "zebra moved away"}, principal=LOCAL_PRINCIPAL)
    service.link(mine.id, theirs.id, "related_to", principal=LOCAL_PRINCIPAL)
    for role in ("admin", "reader"):
        key = service.create_key(f"probe-{role}", role=role, namespaces=["team/a"], principal=LOCAL_PRINCIPAL)
        with running.browser() as tab:
            _login(tab, key.key)
            for path in ("/ui/memories", "/ui/namespaces", "/ui/pending", "/ui/curator", "/ui/bus", f"/ui/memories/{mine.id}"):
                page = tab.get(path)
                assert page.status_code == 200, path
                assert "zebra" not in page.text and "team/b" not in page.text and theirs.id not in page.text, path
            for query in ("q=zebra", "q=zebra&mode=hybrid", "tags=zebratag"):
                found = tab.get(f"/ui/memories?{query}")
                assert found.status_code == 200 and ("No hits." in found.text or "No memories match." in found.text), query
                assert theirs.id not in found.text and "payroll figures" not in found.text
            assert tab.get("/ui/memories?namespace=team/b").status_code == 403
            assert tab.get("/ui/memories?namespace=team").status_code == 403
            for other in (theirs.id, gone.id, moved.id):
                refused = tab.get(f"/ui/memories/{other}")
                assert refused.status_code == 404 and "zebra" not in refused.text, other
            for store_wide in ("/ui/audit", "/ui/metrics"):
                assert tab.get(store_wide).status_code == 403
            token = csrf_of(tab.get(f"/ui/memories/{mine.id}").text)
            attempts = (("edit", theirs.id), ("delete", theirs.id), ("promote", theirs.id), ("restore", gone.id), ("edit", moved.id))
            for action, target in attempts:
                refused = tab.post(f"/ui/memories/{target}/{action}", data={"csrf": token, "content": "taken over"})
                assert refused.status_code in (403, 404), (role, action)
            assert tab.post("/ui/audit/verify", data={"csrf": token}).status_code == 403
    assert service.get(theirs.id, principal=LOCAL_PRINCIPAL).content == "zebra payroll figures"
    assert service.get(moved.id, principal=LOCAL_PRINCIPAL).content == "zebra moved away"
    assert [h.event for h in service.history(gone.id, principal=LOCAL_PRINCIPAL)][-1] == "delete"


def test_an_empty_store_and_odd_ids_filters_and_values_get_a_page_never_a_500(web: Callable[..., InProcess]) -> None:
    running = web()
    with running.browser() as tab:
        for name in PAGES:
            assert tab.get(f"/ui/{name}").status_code == 200, name
        assert tab.get("/ui/memories?q=anything&mode=hybrid").status_code == 200
        for odd in ("nonexistent", "..%2F..%2Fapi%2Fv1%2Fmemories", "%00", "x" * 4000, "日本"):
            missing = tab.get(f"/ui/memories/{odd}")
            assert missing.status_code == 404 and 'id="error-message"' in missing.text, odd
        for query in (
            {"namespace": "../etc"},
            {"namespace": "a%2Fb"},
            {"namespace": "équipe/日本"},
            {"namespace": "a/" + "b" * 300},
            {"cursor": "garbage"},
            {"since": "not a date"},
            {"limit": "1000"},
            {"mode": "fuzzy", "q": "x"},
        ):
            bad = tab.get("/ui/memories", params=query)
            assert bad.status_code == 422 and 'id="error-message"' in bad.text, query
            assert "Traceback" not in bad.text
        assert tab.get("/ui/audit", params={"since": "9" * 30}).status_code == 422
        assert tab.get("/ui/pending", params={"status": "maybe"}).status_code == 422
        huge = tab.get("/ui/memories", params={"q": "x" * 20000})
        assert huge.status_code == 200
        token = csrf_of(tab.get("/ui/login").text)  # the session's token (an empty store has no other form)
        assert tab.post("/ui/memories/nonexistent/edit", data={"csrf": token, "content": "x"}).status_code == 404
        assert tab.post("/ui/pending/nonexistent/approve", data={"csrf": token}).status_code == 404
        assert tab.post("/ui/curator/nonexistent/rollback", data={"csrf": token}).status_code == 404
        assert tab.get("/ui/memories/nonexistent/delete").status_code == 405  # no GET changes anything
        assert tab.get("/ui/static/..%2F..%2Fapp.py").status_code == 404


def test_login_never_redirects_off_the_inspector_for_encoded_targets(web: Callable[..., InProcess]) -> None:
    running = web()
    made = running.service.create_key("nia", role="reader", principal=LOCAL_PRINCIPAL)
    for wanted in ("/ui/%2F%2Fevil.example", "/ui//evil.example", "/ui/%5C%5Cevil.example", "/\\evil.example", "/ui/\r\nSet-Cookie: x=1"):
        with running.browser() as tab:
            page = tab.get("/ui/login", params={"next": wanted})
            done = tab.post("/ui/login", params={"next": wanted}, data={"csrf": csrf_of(page.text), "key": made.key})
            assert done.status_code == 303, wanted
            location = done.headers["location"]
            assert location.startswith("/ui/") and not location.startswith("/ui//") and "\r" not in location and "\n" not in location
            assert "set-cookie: x=1" not in str(done.headers).lower()


def test_a_planted_session_id_never_becomes_a_logged_in_one_and_logout_ends_it_server_side(web: Callable[..., InProcess]) -> None:
    running = web()
    made = running.service.create_key("vic", role="admin", principal=LOCAL_PRINCIPAL)
    with running.browser() as attacker:
        planted = attacker.get("/ui/login").cookies["memmesh_ui"]  # an anonymous session the attacker knows
        attacker_token = csrf_of(attacker.get("/ui/login").text)
    with running.browser() as victim:
        victim.cookies.set("memmesh_ui", planted, path="/ui")
        page = victim.get("/ui/login")
        assert csrf_of(page.text) == attacker_token  # the planted session is the one the form uses ...
        done = victim.post("/ui/login", data={"csrf": attacker_token, "key": made.key})
        assert done.status_code == 303
        fresh = done.cookies["memmesh_ui"]
        assert fresh != planted  # ... but logging in makes a new id
        assert victim.get("/ui/memories").status_code == 200
        token = csrf_of(victim.get("/ui/memories").text)
        assert token != attacker_token
        with httpx.Client(base_url=running.url, cookies={"memmesh_ui": planted}) as replay:
            assert replay.get("/ui/audit").status_code == 303  # the planted id is not logged in
            assert replay.post("/ui/audit/verify", data={"csrf": attacker_token}).status_code in (401, 403)
        assert victim.post("/ui/logout", data={"csrf": token}).status_code == 303
    with httpx.Client(base_url=running.url, cookies={"memmesh_ui": fresh}) as stolen:
        assert stolen.get("/ui/audit").status_code == 303  # a copied cookie is dead after logout


def test_failed_logins_answer_401_without_echoing_the_key_and_odd_keys_never_500(web: Callable[..., InProcess]) -> None:
    running = web()
    made = running.service.create_key("kim", role="reader", principal=LOCAL_PRINCIPAL)
    prefix, _, secret = made.key.partition("_")
    near_miss = f"{prefix}_{secret[:-4]}zzzz"  # a well-formed key with a wrong secret
    with running.browser() as tab:
        for key in (near_miss, "mm_\x00abc", "x" * 10_000, "mm_" + "é" * 50, "mm_abc.def"):
            page = tab.get("/ui/login")
            refused = tab.post("/ui/login", data={"csrf": csrf_of(page.text), "key": key})
            assert refused.status_code == 401, repr(key[:12])
            assert 'id="error-message"' in refused.text and key[4:] not in refused.text
        assert tab.get("/ui/memories").status_code == 303  # none of them logged in
        big = tab.post("/ui/login", content=b"a" * (3 * 1024 * 1024), headers={"content-type": "application/x-www-form-urlencoded"})
        assert big.status_code == 413  # the server's body limit covers /ui too


def test_every_page_kind_carries_the_browser_safety_headers(web: Callable[..., InProcess]) -> None:
    running = web()
    made = running.service.add({"content": "headers everywhere", "namespace": "team/a"}, principal=LOCAL_PRINCIPAL)
    with running.browser() as tab:
        responses = [tab.get(f"/ui/{name}") for name in PAGES]
        responses += [
            tab.get(f"/ui/memories/{made.id}"),
            tab.get("/ui/login"),
            tab.get("/ui/memories/nonexistent"),  # an error page
            tab.get("/ui/no-such-page"),  # the inspector's 404
            tab.get("/ui/memories?limit=7"),  # a 422
            tab.post(f"/ui/memories/{made.id}/edit", data={"csrf": "wrong"}),  # a CSRF refusal
        ]
    for response in responses:
        where = f"{response.request.method} {response.request.url.path} {response.status_code}"
        policy = response.headers.get("content-security-policy", "")
        for directive in ("default-src 'self'", "frame-ancestors 'none'", "form-action 'self'", "base-uri 'none'"):
            assert directive in policy, (where, directive)
        assert "script-src" not in policy and "unsafe-inline" not in policy, where
        assert response.headers.get("x-frame-options") == "DENY", where
        assert response.headers.get("x-content-type-options") == "nosniff", where
        assert response.headers.get("cache-control") == "no-store", where
