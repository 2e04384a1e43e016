"""A client that goes away mid-stream frees its sequence; the engine keeps serving."""

import re
import time

import httpx


def engine_metrics(server) -> dict[str, float]:
    text = httpx.get(server.url + "/metrics", headers={"Authorization": f"Bearer {server.admin_key}"}).text
    out = {}
    for name, labels, value in re.findall(r'^(alize_\w+)\{([^}]*)\} ([0-9.e+]+)$', text, re.M):
        out[f"{name}{{{labels}}}"] = float(value)
    return out


def generated(server) -> float:
    return engine_metrics(server)['alize_engine_generated_tokens_total{model="smollm2-135m-instruct"}']


def running(server) -> float:
    return engine_metrics(server)['alize_requests_running{model="smollm2-135m-instruct"}']


def test_disconnect_mid_stream_aborts_generation(server):
    before = generated(server)
    body = {"model": "mistral-small-latest", "stream": True, "max_tokens": 2000, "min_tokens": 2000,
            "messages": [{"role": "user", "content": "Write a very long essay."}]}
    with httpx.Client(base_url=server.url, timeout=60,
                      headers={"Authorization": f"Bearer {server.key}"}) as client:
        with client.stream("POST", "/v1/chat/completions", json=body) as r:
            lines = r.iter_lines()
            data_lines = 0
            for line in lines:
                data_lines += line.startswith("data: ")
                if data_lines == 5:
                    break
    # closing the connection must free the sequence well before 2,000 tokens
    deadline = time.monotonic() + 30
    while running(server) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert running(server) == 0
    spent = generated(server) - before
    assert 3 <= spent < 2000, spent
    finished = engine_metrics(server)
    assert finished.get('alize_engine_finished_requests_total{model="smollm2-135m-instruct",reason="abort"}', 0) >= 1
    ok = httpx.post(server.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {server.key}"},
                    json={"model": "mistral-small-latest", "max_tokens": 2,
                          "messages": [{"role": "user", "content": "Hi"}]}, timeout=60)
    assert ok.status_code == 200
