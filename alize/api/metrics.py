"""GET /metrics: Prometheus's text format (services/telemetry.py), for an admin key, or for
scrapers on the networks ALIZE_METRICS_OPEN_TO names."""

import asyncio
import ipaddress
from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response
from prometheus_client import generate_latest

from alize.api.deps import require_admin
from alize.services.platform import Platform

router = APIRouter()


def _open_to(request: Request) -> bool:
    networks = request.app.state.platform.settings.metrics_open_to
    host = request.client.host if request.client else None
    if not networks or host is None:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(n.strip(), strict=False) for n in networks.split(",") if n.strip())


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, authorization: Annotated[str | None, Header()] = None) -> Response:
    platform: Platform = request.app.state.platform
    if not _open_to(request):
        await require_admin(request, authorization)
    body = await asyncio.to_thread(generate_latest, platform.telemetry.registry)  # budgets read the database
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")
