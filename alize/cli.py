"""The `alize` command: serve the API, manage keys."""

import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.panel import Panel

from alize.config import Settings
from alize.errors import ConfigError

app = typer.Typer(help="Alizé: the Mistral API on your own machine.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
console = Console(stderr=True)

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Where Alizé keeps its database.")]


def _settings(**overrides: Any) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def _show_key(secret: str, title: str) -> None:
    console.print(Panel(f"[bold]{secret}[/bold]\n\nShown once: Alizé keeps only a hash of it.\n"
                        f"export MISTRAL_API_KEY={secret}", title=title, expand=False))


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    data_dir: DataDir = None,
    config: Annotated[Path | None, typer.Option("--config", help="Model registry (TOML).")] = None,
) -> None:
    """Start the HTTP server."""
    import uvicorn

    from alize.api.app import create_app
    from alize.store.db import Database
    from alize.store.keys import count_keys, create_key

    settings = _settings(host=host, port=port, data_dir=data_dir, config_file=config)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    db = Database(settings.resolved_database_url)
    db.migrate()
    if count_keys(db) == 0:
        _, secret = create_key(db, "default")
        _show_key(secret, "First start: your API key")
    db.close()
    try:
        uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                    log_level=settings.log_level, timeout_graceful_shutdown=5)
    except ConfigError as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(2) from exc


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option("--name", help="A name to recognise the key by.")],
    data_dir: DataDir = None,
) -> None:
    """Create an API key and print its secret once."""
    from alize.store.db import Database
    from alize.store.keys import create_key

    db = Database(_settings(data_dir=data_dir).resolved_database_url)
    db.migrate()
    info, secret = create_key(db, name)
    db.close()
    console.print(f"key id {info.id} ({info.name}, {info.prefix}…)")
    print(secret)


def main() -> None:
    app()
