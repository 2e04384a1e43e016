"""The `alize` command: serve the API; manage workspaces, keys and usage (with or without
a running server: they work on the database directly)."""

import json
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from alize.cli_batch import batch_app
from alize.config import DEFAULT_DATA_DIR, LEGACY_DATA_DIR, Settings
from alize.errors import AlizeError, ConfigError

app = typer.Typer(help="Alizé: the Mistral API on your own machine.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
workspaces_app = typer.Typer(help="Manage workspaces (they own keys, limits and usage).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(workspaces_app, name="workspaces")
limits_app = typer.Typer(help="The limit counters.", no_args_is_help=True)
app.add_typer(batch_app, name="batch")
app.add_typer(limits_app, name="limits")
console = Console(stderr=True)
out = Console(width=None if sys.stdout.isatty() else 250)  # piped: no truncated columns

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Where Alizé keeps its database.")]
DatabaseUrl = Annotated[str | None, typer.Option("--database-url", help="A database URL instead of the data dir.")]
Rpm = Annotated[int | None, typer.Option("--rpm", min=0, help="Requests per minute.")]
Tpm = Annotated[int | None, typer.Option("--tpm", min=0, help="Tokens per minute.")]
MonthlyTokens = Annotated[int | None, typer.Option("--monthly-tokens", min=0, help="Tokens per month.")]
Budget = Annotated[float | None, typer.Option("--budget-eur", min=0, help="Euros per month.")]


def _fail(message: str, code: int = 2) -> NoReturn:
    console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _settings(**overrides: Any) -> Settings:
    """The settings, or one line naming the setting that is wrong and exit 2."""
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0]) if error["loc"] else "?"
        _fail(f"setting {name} (ALIZE_{name.upper()}): {error['msg']} (got {error.get('input')!r})")
    legacy = LEGACY_DATA_DIR / "alize.db"
    if settings.data_dir == DEFAULT_DATA_DIR and not settings.database_url and legacy.is_file():
        console.print(f"[yellow]note:[/yellow] {legacy.resolve()} (the data dir of earlier versions, relative to "
                      f"the current folder) is not used: the data dir is now {DEFAULT_DATA_DIR}. To keep using "
                      f"it, pass --data-dir {LEGACY_DATA_DIR.resolve()} or set ALIZE_DATA_DIR.", highlight=False,
                      soft_wrap=True)
    return settings


def _store_name(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@contextmanager
def _database(data_dir: Path | None, database_url: str | None, changes: bool = False) -> Iterator[Any]:
    """The migrated store; a command that creates or changes something says which store."""
    from alize.store.db import Database

    url = _settings(data_dir=data_dir, database_url=database_url).resolved_database_url
    db = Database(url)
    try:
        db.migrate()
        if changes:
            console.print(f"store: {_store_name(url)}", highlight=False, soft_wrap=True)
        yield db
    except AlizeError as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from exc
    finally:
        db.close()


def _check_port(host: str, port: int) -> None:
    """A busy port is reported at once, before minutes of model loading."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            _fail(f"cannot listen on {host}:{port}: {exc.strerror} (another server? choose one with --port "
                  "or ALIZE_PORT)")


def _show_key(secret: str, title: str) -> None:
    console.print(Panel(f"[bold]{secret}[/bold]\n\nShown once: Alizé keeps only a hash of it.\n"
                        f"export MISTRAL_API_KEY={secret}", title=title, expand=False))


def _limits_text(limits: Any) -> str:
    parts = [f"{name} {value}" for name, value in (("rpm", limits.rpm), ("tpm", limits.tpm),
                                                   ("tokens/month", limits.monthly_tokens)) if value is not None]
    if limits.monthly_budget_nano is not None:
        parts.append(f"{limits.monthly_budget_nano / 1e9:g} EUR/month")
    return ", ".join(parts) or "-"


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    data_dir: DataDir = None,
    config: Annotated[Path | None, typer.Option("--config", help="Model registry (TOML).")] = None,
) -> None:
    """Start the HTTP server."""
    from alize.api import logs, server
    from alize.api.app import create_app
    from alize.registry import Registry
    from alize.services.accounts import AccountService
    from alize.store.accounts import count_keys

    settings = _settings(host=host, port=port, data_dir=data_dir, config_file=config)
    try:  # everything that can be wrong with the configuration, before any model loads
        registry = Registry.load(settings.config_file)
        for backend in registry.local_backends():
            registry.resolve_path(backend)
            registry.chat_template(backend)
    except ConfigError as exc:
        _fail(exc.message)
    _check_port(settings.host, settings.port)
    logs.configure(settings.log_level, settings.log_format)
    console.print(f"data dir {settings.data_dir}; database {_store_name(settings.resolved_database_url)}; "
                  f"models: {registry.source}", highlight=False, soft_wrap=True)
    with _database(data_dir, None) as db, db.exclusive("first-start"):
        if count_keys(db) == 0:  # (several replicas starting at once: one makes the keys)
            accounts = AccountService(db)
            _, secret = accounts.create_key("default")
            _, admin_secret = accounts.create_key("admin", admin=True)
            _show_key(secret, "First start: your API key")
            console.print(f"Admin key (for /admin/v1 and the console): [bold]{admin_secret}[/bold] (shown once)")
    shown_host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    shown_host = f"[{shown_host}]" if ":" in shown_host else shown_host
    console.print(f"console: http://{shown_host}:{settings.port}/console (sign in with an admin key)",
                  highlight=False, soft_wrap=True)
    try:
        server.run(create_app(settings), settings.host, settings.port, settings.log_level,
                   drain_s=settings.drain_seconds, own_log_config=settings.log_format == "text")
    except ConfigError as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(2) from exc
    except KeyboardInterrupt:  # a second Ctrl-C: out at once, no traceback
        raise typer.Exit(130) from None


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option("--name", help="A name to recognise the key by.")],
    workspace: Annotated[str | None, typer.Option("--workspace", help=(
        "The workspace that owns it (default: default); with --admin, the one workspace it administers."))] = None,
    models: Annotated[str | None, typer.Option("--models", help="Comma-separated models it may use.")] = None,
    expires_in: Annotated[float | None, typer.Option("--expires-in", help="Days until it expires.")] = None,
    rpm: Rpm = None, tpm: Tpm = None, monthly_tokens: MonthlyTokens = None, budget_eur: Budget = None,
    admin: Annotated[bool, typer.Option("--admin", help=(
        "May use the admin API and sign in to the console: for every workspace, or with "
        "--workspace for that one only."))] = False,
    data_dir: DataDir = None, database_url: DatabaseUrl = None,
) -> None:
    """Create an API key and print its secret once (on stdout; its id on stderr)."""
    from alize.registry import Registry
    from alize.services.accounts import AccountService, LimitsSpec

    wanted = [m.strip() for m in models.split(",") if m.strip()] if models else None
    if wanted:
        try:
            unknown = Registry.load(_settings().config_file).unknown(wanted)
        except ConfigError as exc:
            _fail(exc.message)
        if unknown:
            _fail(f"--models: this server does not serve {', '.join(unknown)} (see GET /v1/models)")
    with _database(data_dir, database_url, changes=True) as db:
        info, secret = AccountService(db).create_key(
            name, workspace or "default", wanted, expires_in, LimitsSpec(rpm, tpm, monthly_tokens, budget_eur),
            admin, admin_scoped=admin and workspace is not None)
    role = ("; admin of this workspace" if info.admin_scoped else "; admin of every workspace") if admin else ""
    console.print(f"key id {info.id} ({info.name}, {info.prefix}…, workspace {info.workspace.name}{role})")
    print(secret)


@keys_app.command("list")
def keys_list(workspace: Annotated[str | None, typer.Option("--workspace")] = None,
              as_json: Annotated[bool, typer.Option("--json", help="JSON lines, for scripts.")] = False,
              data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """List keys (by prefix; secrets are never shown again)."""
    from alize.services.accounts import AccountService

    with _database(data_dir, database_url) as db:
        keys = AccountService(db).list_keys(workspace)
    if as_json:
        for k in keys:
            print(json.dumps({"id": k.id, "name": k.name, "prefix": k.prefix, "workspace": k.workspace.name,
                              "revoked": k.revoked_at is not None, "admin": k.is_admin,
                              "admin_scope": ("workspace" if k.admin_scoped else "org") if k.is_admin else None,
                              "models": list(k.models),
                              "limits": asdict(k.limits),
                              "expires_at": k.expires_at.isoformat() if k.expires_at else None}))
        return
    table = Table("id", "name", "prefix", "workspace", "state", "models", "limits", "expires")
    for k in keys:
        state = "revoked" if k.revoked_at else (("workspace admin" if k.admin_scoped else "admin")
                                                if k.is_admin else "active")
        table.add_row(k.id, k.name, k.prefix + "…", k.workspace.name, state, ",".join(k.models) or "all",
                      _limits_text(k.limits), k.expires_at.isoformat(timespec="seconds") if k.expires_at else "-")
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(key: Annotated[str, typer.Argument(help="The key's id, name or prefix.")],
                data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """Revoke a key: refused from its very next request on."""
    from alize.services.accounts import AccountService

    with _database(data_dir, database_url, changes=True) as db:
        accounts = AccountService(db)
        info = accounts.revoke_key(accounts.find_key(key).id)
    console.print(f"revoked {info.id} ({info.name})")


@keys_app.command("rotate")
def keys_rotate(key: Annotated[str, typer.Argument(help="The key's id, name or prefix.")],
                grace: Annotated[float, typer.Option("--grace", min=0, help="Seconds the old secret still works.")] = 3600,
                data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """Give a key a new secret (printed once); the old one works for --grace seconds."""
    from alize.services.accounts import AccountService

    with _database(data_dir, database_url, changes=True) as db:
        accounts = AccountService(db)
        info, secret = accounts.rotate_key(accounts.find_key(key).id, grace)
    console.print(f"rotated {info.id} ({info.name}); the old secret works for {grace:g} s more")
    print(secret)


@workspaces_app.command("create")
def workspaces_create(name: str, rpm: Rpm = None, tpm: Tpm = None, monthly_tokens: MonthlyTokens = None,
                      budget_eur: Budget = None, data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """Create a workspace, with optional limits."""
    from alize.services.accounts import AccountService, LimitsSpec

    with _database(data_dir, database_url, changes=True) as db:
        ws = AccountService(db).create_workspace(name, LimitsSpec(rpm, tpm, monthly_tokens, budget_eur))
    console.print(f"workspace {ws.name} ({ws.id}): {_limits_text(ws.limits)}")


@workspaces_app.command("list")
def workspaces_list(data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """List workspaces and their limits."""
    from alize.services.accounts import AccountService

    with _database(data_dir, database_url) as db:
        workspaces = AccountService(db).list_workspaces()
    table = Table("id", "name", "limits", "created")
    for ws in workspaces:
        table.add_row(ws.id, ws.name, _limits_text(ws.limits), ws.created_at.isoformat(timespec="seconds"))
    out.print(table)


@workspaces_app.command("limits")
def workspaces_limits(
    name: str, rpm: Rpm = None, tpm: Tpm = None, monthly_tokens: MonthlyTokens = None, budget_eur: Budget = None,
    unset: Annotated[list[str] | None, typer.Option("--unset", help="Remove a limit: rpm, tpm, monthly_tokens, "
                                                    "budget_eur (repeatable).")] = None,
    data_dir: DataDir = None, database_url: DatabaseUrl = None,
) -> None:
    """Show a workspace's limits, or change those given."""
    from alize.services.accounts import AccountService

    changes: dict[str, object] = {k: v for k, v in (("rpm", rpm), ("tpm", tpm), ("monthly_tokens", monthly_tokens),
                                                     ("budget_eur", budget_eur)) if v is not None}
    for field in unset or []:
        if field not in ("rpm", "tpm", "monthly_tokens", "budget_eur"):
            raise typer.BadParameter(f"unknown limit {field!r}", param_hint="--unset")
        changes[field] = None
    with _database(data_dir, database_url, changes=bool(changes)) as db:
        accounts = AccountService(db)
        ws = accounts.set_workspace_limits(name, changes) if changes else accounts.get_workspace(name)
    out.print(f"workspace {ws.name}: {_limits_text(ws.limits)}")


@app.command()
def usage(
    start: Annotated[str | None, typer.Option(help="First day (YYYY-MM-DD); default 30 days ago.")] = None,
    end: Annotated[str | None, typer.Option(help="Last day (YYYY-MM-DD); default today.")] = None,
    group_by: Annotated[str, typer.Option("--group-by", help="day, model, key, workspace or endpoint.")] = "day",
    workspace: Annotated[str | None, typer.Option("--workspace")] = None,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV instead of a table.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines, for scripts.")] = False,
    data_dir: DataDir = None, database_url: DatabaseUrl = None,
) -> None:
    """Usage and cost over a date range (UTC days)."""
    from alize.services.accounts import AccountService
    from alize.services.reports import COLUMNS, ReportService

    with _database(data_dir, database_url) as db:
        workspace_id = AccountService(db).get_workspace(workspace).id if workspace else None
        report = ReportService(db).usage(start, end, group_by, workspace_id)
    if as_csv:
        print(report.csv(), end="")
        return
    if as_json:
        for row in report.rows:
            print(json.dumps({group_by: row["group"], **{c: row[c] for c in COLUMNS[1:]}}))
        return
    names = group_by in ("key", "workspace")  # by name; the id after it
    table = Table(group_by, *COLUMNS[2:], title=f"Usage {report.start} .. {report.end}")
    for row in [*report.rows, report.totals()]:
        label = f"{row['name']} ({row['group'][:8]})" if names and row["group"] != "total" else str(row["group"])
        table.add_row(label, *(str(row[c]) for c in COLUMNS[2:]))
    out.print(table)


@limits_app.command("reconcile")
def limits_reconcile(data_dir: DataDir = None, database_url: DatabaseUrl = None,
                     redis_url: Annotated[str | None, typer.Option("--redis-url", help="The shared counters.")] = None,
                     ) -> None:
    """Sets this month's shared limit counters (Redis) to the usage table's totals plus the
    reservations of live servers, and gives back those of dead ones."""
    import asyncio

    from alize.services.limits import Limiter
    from alize.store.redis_counters import RedisCounters

    url = _settings(redis_url=redis_url).redis_url
    if not url:
        console.print("No Redis (--redis-url or ALIZE_REDIS_URL): the counters live in the server process "
                      "and are rebuilt from the usage table at each start; nothing to reconcile.")
        return

    async def reconcile(db: Any) -> list[tuple[str, int]]:
        counters = RedisCounters(url)
        try:
            reclaimed = await counters.renew()
            if reclaimed:
                console.print(f"gave back the reservations of {reclaimed} stopped server(s)")
            return await Limiter(counters, db).reconcile()
        finally:
            await counters.close()

    with _database(data_dir, database_url) as db:
        rows = asyncio.run(reconcile(db))
    console.print(f"{len(rows)} counter(s) reconciled with the usage table of {db.engine.url.render_as_string()}")
    for name, total in rows:
        out.print(f"{name}\t{total}")


def main() -> None:
    app()
