"""Starts a real `alize serve` process for the tests and talks to it over HTTP."""

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alize(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "alize", *args], capture_output=True, text=True,
                          check=True, cwd=ROOT, env={**os.environ, **(env or {})}, timeout=120)


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    key: str
    data_dir: Path
    log_path: Path
    admin_key: str = ""

    @property
    def v1(self) -> str:
        return self.url + "/v1"

    def client(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120,
                            headers={"Authorization": f"Bearer {key or self.key}"})

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_server(data_dir: Path, env: dict[str, str] | None = None, timeout: float = 180,
                 create_keys: bool = True) -> Server:
    """Starts `alize serve` on a free port; env may name ALIZE_DATABASE_URL, ALIZE_REDIS_URL..."""
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "ALIZE_THREADS": os.environ.get("ALIZE_THREADS", "2"), **(env or {})}
    key = admin_key = ""
    if create_keys:
        key = alize("keys", "create", "--name", "tests", "--data-dir", str(data_dir), env=env).stdout.strip()
        admin_key = alize("keys", "create", "--name", "tests-admin", "--admin", "--data-dir", str(data_dir),
                          env=env).stdout.strip()
    port = free_port()
    log_path = data_dir / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "alize", "serve", "--port", str(port), "--data-dir", str(data_dir)],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
        )
    server = Server(process, f"http://127.0.0.1:{port}", key, data_dir, log_path, admin_key)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"alize serve exited with {process.returncode}:\n{server.log()}")
        try:
            if httpx.get(server.url + "/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"alize serve did not become healthy in {timeout} s:\n{server.log()}")
