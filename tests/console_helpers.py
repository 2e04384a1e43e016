"""Signing in to the console over plain HTTP (httpx), as a browser would."""

import re

import httpx

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF field in the page"
    return found.group(1)


def sign_in(url: str, key: str) -> tuple[httpx.Client, httpx.Response]:
    """A client holding the cookies of a sign-in with `key`, and the sign-in's response."""
    client = httpx.Client(base_url=url, timeout=60)
    form = client.get("/console/sign-in")
    response = client.post("/console/sign-in", data={"key": key, "csrf": csrf_of(form.text)})
    return client, response


def signed_in(url: str, key: str) -> tuple[httpx.Client, str]:
    """A signed-in client and the session's CSRF token."""
    client, response = sign_in(url, key)
    assert response.status_code == 303 and response.headers["location"] == "/console/", response.text
    return client, csrf_of(client.get("/console/keys").text)
