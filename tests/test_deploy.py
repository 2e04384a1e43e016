"""The deployment in deploy/ (docs/deployment.md) holds together: the compose file parses,
the registry it mounts loads, and every name one part gives another exists. (It is not
started here: it needs GPUs and images from registries.)"""

import re
from pathlib import Path
from urllib.parse import urlparse

import yaml

from alize.registry import Registry

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def test_the_compose_file_and_its_registry_agree():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    registry = Registry.load(DEPLOY / "models.toml")
    assert registry.local_backends() == []  # a gateway: no model loaded by Alizé
    for entry in registry.models():
        for backend in entry.backends:
            host = urlparse(backend.url)
            assert host.hostname in services and host.port == 8000, backend.url
    alize = services["alize"]
    env = alize["environment"]
    assert urlparse(env["ALIZE_DATABASE_URL"]).hostname == "postgres" and "postgres" in services
    assert urlparse(env["ALIZE_REDIS_URL"]).hostname == "redis" and "redis" in services
    assert any(v.endswith(":/etc/alize/models.toml:ro") for v in alize["volumes"])
    assert env["ALIZE_CONFIG_FILE"] == "/etc/alize/models.toml"
    assert any(v.split(":")[1] == "/data" for v in alize["volumes"])  # files shared by every replica
    nginx = (DEPLOY / "nginx.conf").read_text()
    assert re.search(r"server alize:8000", nginx) and "proxy_buffering off" in nginx
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "scripts/setup.sh" in dockerfile and "ALIZE_DATA_DIR=/data" in dockerfile
