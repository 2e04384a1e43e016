"""The console's security over real HTTP, against a real server: who may sign in, the
session cookie, CSRF, CSP, escaping, sign-out and revocation, and workspace admins."""

import re

import httpx

from tests.console_helpers import csrf_of, sign_in, signed_in
from tests.platform_helpers import create_key
from tests.server import alize

PAGES = ["/console/", "/console/costs", "/console/keys", "/console/workspaces", "/console/batches",
         "/console/models", "/console/playground"]


def test_only_an_admin_key_signs_in(server):
    for key, status, says in ((server.key, 403, "Only an admin key"), ("alz-nope", 401, "not a valid key"),
                              ("", 401, "not a valid key")):
        client, response = sign_in(server.url, key)
        assert response.status_code == status and says in response.text
        assert "alize_console" not in client.cookies
        assert client.get("/console/", follow_redirects=False).headers["location"] == "/console/sign-in"
    anonymous = httpx.get(server.url + "/console/keys", follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/console/sign-in"


def test_session_cookie_flags_and_security_headers(server):
    client, response = sign_in(server.url, server.admin_key)
    cookie = response.headers["set-cookie"]
    assert "alize_console=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Path=/console" in cookie and "Secure" not in cookie  # plain HTTP here; Secure under HTTPS
    anonymous = httpx.Client(base_url=server.url)
    for path in PAGES + ["/console/sign-in"]:
        page = (anonymous if path.endswith("sign-in") else client).get(path)
        assert page.status_code == 200, (path, page.text[:300])
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
        assert "<script>" not in page.text and " style=" not in page.text and "onclick" not in page.text
        assert not re.search(r'(src|href)="https?://', page.text), path  # nothing from elsewhere
    for asset in re.findall(r'(?:src|href)="(/console/static/[^"]+)"', client.get("/console/").text):
        assert client.get(asset).status_code == 200


def test_csrf_is_required_for_every_change(server):
    client, csrf = signed_in(server.url, server.admin_key)
    before = len(httpx.get(server.url + "/admin/v1/keys", headers={"Authorization": f"Bearer {server.admin_key}"})
                 .json()["data"])
    for data in ({"name": "no-token"}, {"name": "bad-token", "csrf": "x" * 43}):
        refused = client.post("/console/keys", data=data, headers={"accept": "text/html"})
        assert refused.status_code == 403 and "CSRF" in refused.text
    json_refused = client.post("/console/api/playground-key", json={"workspace": "default"})
    assert json_refused.status_code == 403 and json_refused.json()["code"] == "csrf"
    after = httpx.get(server.url + "/admin/v1/keys", headers={"Authorization": f"Bearer {server.admin_key}"})
    assert len(after.json()["data"]) == before  # nothing was created
    made = client.post("/console/keys", data={"name": "with-token", "csrf": csrf})
    assert made.status_code == 201 and "alz-" in made.text
    stale_form = client.post("/console/sign-in", data={"key": server.admin_key, "csrf": "forged"})
    assert stale_form.status_code == 403  # the sign-in form has its own token


def test_user_supplied_names_render_inert(server):
    evil = '<script>alert(1)</script><img src=x onerror=alert(2)>'
    create_key(server, name=evil)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.admin_key}"}) as admin:
        admin.post("/admin/v1/workspaces", json={"name": 'ws"><svg onload=alert(3)>'})
    client, _ = signed_in(server.url, server.admin_key)
    for path in ("/console/keys", "/console/workspaces", "/console/"):
        html = client.get(path).text
        assert "<script>alert(1)" not in html and "<img src=x" not in html and "<svg onload" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in client.get("/console/keys").text


def test_sign_out_and_revocation_end_the_session(server):
    client, csrf = signed_in(server.url, server.admin_key)
    assert client.get("/console/keys").status_code == 200
    assert client.post("/console/sign-out", data={"csrf": csrf}).status_code == 303
    assert client.get("/console/keys", follow_redirects=False).status_code == 303
    admin = create_key(server, name="short-admin", admin=True)
    other, _ = signed_in(server.url, admin["secret"])
    assert other.get("/console/keys").status_code == 200
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.admin_key}"}) as org:
        assert org.post(f"/admin/v1/keys/{admin['id']}/revoke").status_code == 200
    assert other.get("/console/keys", follow_redirects=False).headers["location"] == "/console/sign-in"
    assert other.get("/console/batches/rows", headers={"HX-Request": "true"}).headers["hx-redirect"] == "/console/sign-in"


def test_a_workspace_admin_is_confined_to_its_workspace(server):
    env_dir = ["--data-dir", str(server.data_dir)]
    alize("workspaces", "create", "team-blue", *env_dir)
    alize("workspaces", "create", "team-red", *env_dir)
    blue_admin = alize("keys", "create", "--name", "blue-admin", "--admin", "--workspace", "team-blue",
                       *env_dir).stdout.strip()
    red = create_key(server, name="red-secret-key", workspace="team-red")
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {blue_admin}"}) as blue:
        assert {w["name"] for w in blue.get("/admin/v1/workspaces").json()["data"]} == {"team-blue"}
        keys = blue.get("/admin/v1/keys").json()["data"]
        assert {k["workspace"] for k in keys} == {"team-blue"} and keys[0]["admin_scope"] == "workspace"
        assert blue.post(f"/admin/v1/keys/{red['id']}/revoke").status_code == 404
        assert blue.get("/admin/v1/usage", params={"workspace": "team-red"}).status_code == 404
        assert blue.post("/admin/v1/workspaces", json={"name": "mine"}).status_code == 403
        assert blue.post("/admin/v1/keys", json={"name": "boss", "admin": True}).status_code == 403
        made = blue.post("/admin/v1/keys", json={"name": "blue-key"})
        assert made.status_code == 201 and made.json()["workspace"] == "team-blue"
    client, csrf = signed_in(server.url, blue_admin)
    keys_page = client.get("/console/keys").text
    assert "blue-key" in keys_page and "red-secret-key" not in keys_page and "team-red" not in keys_page
    assert "team-red" not in client.get("/console/workspaces").text
    revoke = client.post(f"/console/keys/{red['id']}/revoke", data={"csrf": csrf})
    assert revoke.status_code == 404
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {red['secret']}"}) as red_client:
        assert red_client.get("/v1/models").status_code == 200  # untouched
    assert client.get("/console/usage.csv", params={"workspace": "team-red"}).status_code == 404


def test_the_sign_in_form_is_a_real_form(server):
    html = httpx.get(server.url + "/console/sign-in").text
    assert 'type="password"' in html and 'name="key"' in html and csrf_of(html)


def test_behind_https_the_cookie_is_secure(server):
    """Behind a TLS proxy on this host (uvicorn trusts X-Forwarded-Proto from 127.0.0.1)."""
    client = httpx.Client(base_url=server.url, headers={"X-Forwarded-Proto": "https"})
    form = client.get("/console/sign-in")
    assert "Secure" in form.headers["set-cookie"]
    token = csrf_of(form.text)  # sent back by hand: httpx keeps Secure cookies off plain HTTP, as it should
    response = client.post("/console/sign-in", data={"key": server.admin_key, "csrf": token},
                           headers={"Cookie": f"alize_console_sign_in={token}"})
    cookie = response.headers["set-cookie"]
    assert response.status_code == 303 and "alize_console=" in cookie and "Secure" in cookie


def test_batch_jobs_are_cancelled_only_within_the_admins_view(server):
    env_dir = ["--data-dir", str(server.data_dir)]
    alize("workspaces", "create", "team-batch", *env_dir)
    alize("workspaces", "create", "team-other", *env_dir)
    other_admin = alize("keys", "create", "--name", "other-admin", "--admin", "--workspace", "team-other",
                        *env_dir).stdout.strip()
    owner = create_key(server, name="batch-owner", workspace="team-batch")
    lines = [{"custom_id": f"c{i}", "body": {"messages": [{"role": "user", "content": f"Count to {i}"}],
                                             "max_tokens": 64}} for i in range(40)]
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {owner['secret']}"}) as api:
        job = api.post("/v1/batch/jobs", json={"model": "mistral-tiny", "endpoint": "/v1/chat/completions",
                                               "requests": lines}).json()
        workspace_id = owner["workspace_id"]
        outsider, outsider_csrf = signed_in(server.url, other_admin)
        assert job["id"] not in outsider.get("/console/batches").text
        refused = outsider.post(f"/console/batches/{workspace_id}/{job['id']}/cancel", data={"csrf": outsider_csrf})
        assert refused.status_code == 404
        assert api.get(f"/v1/batch/jobs/{job['id']}").json()["status"] in ("QUEUED", "RUNNING")
        org, csrf = signed_in(server.url, server.admin_key)
        assert job["id"] in org.get("/console/batches/rows").text
        cancelled = org.post(f"/console/batches/{workspace_id}/{job['id']}/cancel", data={"csrf": csrf})
        assert cancelled.status_code == 200 and "cancel" in cancelled.text.lower()
        assert api.get(f"/v1/batch/jobs/{job['id']}").json()["status"] in ("CANCELLATION_REQUESTED", "CANCELLED")
        # a job run by an agent shows the agent and the version that answers it
        agent = api.post("/v1/agents", json={"model": "mistral-tiny", "name": "console-agent"}).json()
        api.post("/v1/batch/jobs", json={"agent_id": agent["id"], "endpoint": "/v1/chat/completions",
                                         "requests": lines[:1]}).raise_for_status()
        assert f"agent <code>{agent['id']}</code> v0" in org.get("/console/batches/rows").text
