"""Tests that need PostgreSQL or Redis skip with one clear line when it is not running,
and fail instead under ALIZE_REQUIRE_SERVICES=1 (CI)."""

import pytest
from _pytest.outcomes import Failed, Skipped

from tests import databases


@pytest.fixture
def nothing_running(monkeypatch):
    monkeypatch.setattr(databases, "PG_ADMIN", "host=127.0.0.1 port=1 user=postgres dbname=test")
    monkeypatch.setattr(databases, "REDIS_URL", "redis://127.0.0.1:1/0")
    databases._missing.cache_clear()
    yield
    databases._missing.cache_clear()


@pytest.mark.parametrize("service", ["postgresql", "redis"])
def test_a_missing_service_skips_with_how_to_enable_it(nothing_running, monkeypatch, service):
    monkeypatch.delenv("ALIZE_REQUIRE_SERVICES", raising=False)
    with pytest.raises(Skipped) as info:
        databases.need(service)
    assert "is not running" in str(info.value) and "make test" in str(info.value)


@pytest.mark.parametrize("service", ["postgresql", "redis"])
def test_ci_turns_the_skip_into_a_failure(nothing_running, monkeypatch, service):
    monkeypatch.setenv("ALIZE_REQUIRE_SERVICES", "1")
    with pytest.raises(Failed):
        databases.need(service)
