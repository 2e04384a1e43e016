"""Metering fails closed: every route that takes a metered call is metered by the
middleware, and a model route it would not meter stops the server from starting."""

import pytest
from fastapi import APIRouter, FastAPI

from alize.api.app import create_app
from alize.api.deps import CallDep, metered_call
from alize.api.metering import unmetered_model_routes
from alize.config import Settings
from alize.services.metering import ENDPOINT_NAMES, endpoint_of

CONVERSATION_RUNS = {"/v1/conversations", "/v1/conversations/{conversation_id}",
                     "/v1/conversations/{conversation_id}/restart"}


def _routes_taking_a_call(app: FastAPI) -> set[str]:
    from alize.api.metering import _depends_on, api_routes

    return {path for path, route in api_routes(app.routes) if _depends_on(route.dependant, metered_call)}


def test_every_model_route_of_the_app_is_metered(tmp_path):
    app = create_app(Settings(data_dir=tmp_path))  # the platform starts only with the lifespan
    assert unmetered_model_routes(app.routes, metered_call) == []
    assert _routes_taking_a_call(app) == set(ENDPOINT_NAMES) | CONVERSATION_RUNS
    assert {endpoint_of(path) for path in CONVERSATION_RUNS} == {"conversations"}
    assert endpoint_of("/v1/conversations/conv_1/history") is None  # reads are not metered


def test_a_model_route_missing_from_the_table_is_found():
    router = APIRouter()

    @router.post("/v1/ocr")
    async def ocr(call: CallDep) -> dict:
        return {}

    @router.get("/v1/chat/completions")
    async def wrong_method(call: CallDep) -> dict:
        return {}

    app = FastAPI()
    app.include_router(router)
    assert unmetered_model_routes(app.routes, metered_call) == ["POST /v1/ocr", "GET /v1/chat/completions"]


def test_create_app_refuses_to_start_with_an_unmetered_model_route(tmp_path, monkeypatch):
    from alize.api.routes import models

    extra = APIRouter()

    @extra.post("/v1/ocr")
    async def ocr(call: CallDep) -> dict:
        return {}

    monkeypatch.setattr(models, "router", extra)
    with pytest.raises(RuntimeError, match="/v1/ocr"):
        create_app(Settings(data_dir=tmp_path))
