"""Pages from Jinja2 templates, every value escaped (autoescape), with the assets'
versioned URLs and number formats the templates share."""

import hashlib
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from alize import __version__
from alize.console.security import Console

HERE = Path(__file__).parent
STATIC = HERE / "static"

NAV = [("usage", "Usage", "/console/"), ("costs", "Cost comparison", "/console/costs"),
       ("keys", "API keys", "/console/keys"), ("workspaces", "Workspaces", "/console/workspaces"),
       ("batches", "Batches & files", "/console/batches"), ("models", "Models", "/console/models"),
       ("playground", "Playground", "/console/playground")]


@cache
def asset(name: str) -> str:
    """/console/static/NAME?v=<hash of its bytes>: browsers may cache it for good."""
    digest = hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:12]
    return f"/console/static/{name}?v={digest}"


def tokens(value: int | float) -> str:
    return f"{int(value):,}".replace(",", "\u202f")


def eur(value: Any, digits: int = 6) -> str:
    """Euros to the micro-euro, without trailing zeros past the cents: €0.50, €458.982, €0.000086."""
    amount = float(value)
    text = f"{abs(amount):,.{digits}f}"
    if "." in text:
        whole, fraction = text.split(".")
        text = f"{whole}.{fraction.rstrip('0').ljust(2, '0')}"
    sign = "\u2212" if amount < 0 and text.strip("0.,") else ""
    return sign + "€" + text.replace(",", "\u202f")


def when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "—"


def percent(share: float | None) -> str:
    return "—" if share is None else f"{share * 100:.0f}%"


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.globals.update(asset=asset, nav=NAV, version=__version__)
    env.filters.update(tokens=tokens, eur=eur, when=when, percent=percent)
    return env


ENV = _environment()


def page(request: Request, template: str, console: Console | None, status: int = 200,
         **context: Any) -> HTMLResponse:
    """A whole page (or, for a template named _*.html, a fragment) for the signed-in admin."""
    values = {"request": request, "console": console, "admin": console.session.key if console else None,
              "csrf": console.csrf if console else "", "error": None, "notice": None, **context}
    return HTMLResponse(ENV.get_template(template).render(values), status_code=status)
