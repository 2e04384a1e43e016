"""create_app(settings): the FastAPI application, with the platform started in its lifespan."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from alize import __version__, console
from alize.api import errors, metrics
from alize.api.deps import metered_call
from alize.api.draining import RefuseWhileDraining
from alize.api.limits import BodySizeLimit
from alize.api.metering import Metering, unmetered_model_routes
from alize.api.request_id import RequestId
from alize.api.routes import (
    admin,
    agents,
    batch,
    chat,
    conversations,
    embeddings,
    files,
    libraries,
    models,
    moderations,
)
from alize.config import Settings
from alize.services.platform import Platform


def create_app(settings: Settings, platform: Platform | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.platform = platform or Platform.start(settings)
        app.state.loop = asyncio.get_running_loop()  # for the shutdown signal (api/server.py)
        app.state.platform.start_background()
        try:
            yield
        finally:
            await app.state.platform.aclose()

    app = FastAPI(title="Alizé", version=__version__, lifespan=lifespan,
                  docs_url="/docs", redoc_url=None)
    errors.install(app)
    console.install(app)
    for module in (chat, embeddings, models, metrics, admin, files, batch, agents, conversations, moderations,
                   libraries):
        app.include_router(module.router)
    unmetered = unmetered_model_routes(app.routes, metered_call)
    if unmetered:  # fail closed: a model route must be metered, or the server does not start
        raise RuntimeError(f"model routes missing from the metered endpoints: {', '.join(unmetered)}")
    app.add_middleware(Metering)
    framing = 64 * 1024  # a multipart body's boundaries and headers
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes,
                       larger={"/v1/files": settings.max_file_bytes + framing,
                               "/v1/libraries/[^/]+/documents": settings.max_document_bytes + framing})
    app.add_middleware(RefuseWhileDraining)
    app.add_middleware(RequestId)  # outermost: every answer and error carries the id
    return app
