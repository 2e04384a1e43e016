"""The web console at /console: La Plateforme's dashboard, served by `alize serve` itself.

Server-rendered pages (Jinja2) over the same services as /admin/v1 (services/admin.py's
AdminView decides what an admin key sees), htmx for partial updates, the chart as SVG;
every asset is a file in console/static, nothing is fetched at run time."""

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from alize.console import accounts, auth, catalog, jobs, usage
from alize.console.render import STATIC
from alize.console.security import SecurityHeaders


def install(app: FastAPI) -> None:
    for module in (auth, usage, accounts, jobs, catalog):
        app.include_router(module.router)
    auth.install_handlers(app)
    app.mount("/console/static", StaticFiles(directory=STATIC), name="console-static")
    app.add_middleware(SecurityHeaders)
