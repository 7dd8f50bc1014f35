"""Operators' commands.

Settings come from ``BASTION_*`` variables or ``.env``, as for the service.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from datetime import timedelta
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from bastion.accounts import ROLES, InvalidEmailError
from bastion.clock import SystemClock
from bastion.config import Settings, check_settings
from bastion.errors import BastionError, ConfigurationError, PasswordPolicyError
from bastion.events.chain import ChainBrokenError, ChainReport, Checkpoint
from bastion.runtime import open_security
from bastion.stores import open_stores
from bastion.stores.sql import SQLEventStore
from bastion.tokens import KeySet, ensure_key_file, load_key_file, save_key_file
from bastion_cli.chain import chain_key, print_report, verify_events
from bastion_cli.events import JSONLinesPrinter, TablePrinter, tail

__all__ = ["app", "main"]

app = typer.Typer(help="Bastion: the security layer and task service.", no_args_is_help=True)
users_app = typer.Typer(help="Manage accounts.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage the token signing keys.", no_args_is_help=True)
events_app = typer.Typer(
    help="Read, verify and purge the stored security events.", no_args_is_help=True
)
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
app.add_typer(events_app, name="events")

console = Console(stderr=True)
_KEY_LEEWAY = timedelta(seconds=60)


def _settings() -> Settings:
    try:
        return Settings()
    except ValueError as exc:
        console.print(f"[red]Invalid settings:[/red] {exc}")
        raise typer.Exit(2) from exc


def _fail(message: str, code: int = 1) -> typer.Exit:
    console.print(f"[red]{message}[/red]")
    return typer.Exit(code)


def _migrate_embedded(settings: Settings) -> None:
    """The embedded SQLite database is migrated on use; PostgreSQL only by ``bastion migrate``."""
    if settings.database_url.startswith("sqlite"):
        from bastion_tasks.migrate import upgrade

        upgrade(settings.database_url)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
) -> None:
    """Start the task service (migrating the embedded SQLite database first)."""
    import uvicorn

    settings = _settings()
    try:
        check_settings(settings, keys_exist=settings.keys_path.exists())
    except ConfigurationError as exc:
        raise _fail(f"Refusing to start: {exc}", 2) from exc
    if workers > 1 and settings.redis_url is None:
        # Each worker would keep its own revocation state and cached roles: a logout or
        # a demotion would reach one worker only.
        raise _fail(
            "Refusing to start: BASTION_REDIS_URL: several workers must share revocation "
            "state through Redis",
            2,
        )
    if settings.jwt_algorithm != "HS256" and not settings.is_production:
        # Make the development keys once, before any worker starts, so all share them.
        _, generated = ensure_key_file(settings.keys_path, settings.jwt_algorithm)
        if generated:
            console.print(f"Generated development signing keys in {settings.keys_path}")
    _migrate_embedded(settings)
    console.print(f"Bastion task service on http://{host}:{port} (docs at /docs)")
    uvicorn.run(
        "bastion_tasks:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        server_header=False,
        proxy_headers=False,  # the client IP is decided by BASTION_TRUSTED_PROXIES only
        log_level="info",
    )


@app.command()
def migrate() -> None:
    """Apply the database migrations."""
    from bastion_tasks.migrate import upgrade

    settings = _settings()
    upgrade(settings.database_url)
    console.print("Database is up to date.")


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Option(help="The account's email address.")],
    role: Annotated[str, typer.Option(help="viewer, member or admin.")] = "member",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Create an account. The password is prompted for (or read from stdin), never an argument."""
    if role not in ROLES:
        raise _fail(f"Unknown role {role!r}; one of {', '.join(ROLES)}.", 2)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    settings = _settings()
    _migrate_embedded(settings)

    async def create() -> bool:
        security = open_security(settings)
        try:
            # The operator vouches for the address: the account can log in at once,
            # also where logins need a verified address.
            account = await security.accounts.register(
                email, password, role=role, email_verified=True
            )
            return account is not None
        finally:
            await security.aclose()

    try:
        created = asyncio.run(create())
    except PasswordPolicyError as exc:
        raise _fail("Password refused: " + " ".join(exc.reasons)) from exc
    except InvalidEmailError as exc:
        raise _fail(f"Invalid email: {exc}") from exc
    except BastionError as exc:
        raise _fail(str(exc)) from exc
    if not created:
        raise _fail("An account with this email already exists.")
    console.print(f"Created {role} account {email}.")


def _keys_settings() -> Settings:
    settings = _settings()
    if settings.jwt_algorithm == "HS256":
        raise _fail(
            "BASTION_JWT_ALGORITHM is HS256: the key is BASTION_JWT_SECRET, not a key file."
        )
    return settings


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Add a new signing key; old keys keep verifying until their tokens have expired."""
    settings = _keys_settings()
    clock = SystemClock()
    path = settings.keys_path
    if not path.exists():
        ensure_key_file(path, settings.jwt_algorithm, clock=clock)
        keys = load_key_file(path)
        console.print(f"Created {path} with signing key {keys.signing_key.kid}.")
        return
    keys = load_key_file(path)
    new_key = keys.rotate(clock=clock, alg=settings.jwt_algorithm)
    removed = keys.prune(
        clock=clock, keep_for=timedelta(seconds=settings.access_token_ttl_seconds) + _KEY_LEEWAY
    )
    save_key_file(path, keys)
    console.print(f"New signing key {new_key.kid}; removed expired keys: {removed or 'none'}.")
    console.print("Restart the service instances to sign with the new key.")


@keys_app.command("list")
def keys_list() -> None:
    """Show the signing keys (never their private material)."""
    settings = _keys_settings()
    try:
        keys: KeySet = load_key_file(settings.keys_path)
    except ConfigurationError as exc:
        raise _fail(str(exc)) from exc
    table = Table("kid", "alg", "created", "retired", "signs")
    signing = keys.signing_key.kid
    for key in keys.keys:
        table.add_row(
            key.kid,
            key.alg,
            key.created_at.isoformat(),
            key.retired_at.isoformat() if key.retired_at else "-",
            "yes" if key.kid == signing else "",
        )
    Console().print(table)


def _event_type(value: str | None) -> str | None:
    if value is not None and not 1 <= len(value) <= 64:
        raise typer.BadParameter("an event type has 1 to 64 characters")
    return value


@events_app.command("tail")
def events_tail(
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events until Ctrl-C.")
    ] = False,
    event_type: Annotated[
        str | None,
        typer.Option("--type", help="Only events of this type.", callback=_event_type),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=0, max=1000, help="How many latest events.")
    ] = 20,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object a line instead of a table.")
    ] = False,
    interval: Annotated[
        float, typer.Option(min=0.01, help="Seconds between polls with --follow.")
    ] = 1.0,
    max_polls: Annotated[int | None, typer.Option(hidden=True, min=0)] = None,
) -> None:
    """Print the latest security events, oldest first (a table; --json for JSON lines).

    Reads the configured database directly; with --follow, polls it for new events.
    """
    settings = _settings()
    if settings.database_url.startswith("memory://"):
        raise _fail(
            "BASTION_DATABASE_URL is memory://: the events live in the service's process.", 2
        )
    _migrate_embedded(settings)
    printer = JSONLinesPrinter() if as_json else TablePrinter()

    async def run() -> None:
        stores = open_stores(settings.database_url)
        try:
            await tail(
                stores.events,
                printer,
                event_type=event_type,
                limit=limit,
                follow=follow,
                interval=interval,
                max_polls=max_polls,
            )
        finally:
            await stores.aclose()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        return  # Ctrl-C ends --follow: the normal way out
    except (SQLAlchemyError, OSError) as exc:
        raise _fail(
            f"Cannot read the security events ({type(exc).__name__}); is the "
            "database migrated (bastion migrate)?"
        ) from exc


def _chained_database(memory_reason: str) -> tuple[Settings, bytes]:
    """The settings and the chain key, for commands on the stored chain (exit 2 without)."""
    settings = _settings()
    if settings.database_url.startswith("memory://"):
        raise _fail(f"BASTION_DATABASE_URL is memory://: {memory_reason}.", 2)
    _migrate_embedded(settings)
    try:
        return settings, chain_key(settings)
    except ConfigurationError as exc:
        raise _fail(str(exc), 2) from exc


@events_app.command("verify")
def events_verify() -> None:
    """Verify the tamper-evident chain of the stored security events.

    Prints "chain intact: N events" and exits 0, or the first row that was modified,
    deleted after or inserted, and exits 1. Reads the configured database and key file.
    """
    settings, key = _chained_database("the events are not chained")

    async def run() -> int:
        stores = open_stores(settings.database_url)
        try:
            assert stores.engine is not None  # a SQL database URL
            report = await verify_events(stores.engine, key, console)
        finally:
            await stores.aclose()
        return print_report(report, Console(highlight=False))

    try:
        code = asyncio.run(run())
    except (SQLAlchemyError, OSError) as exc:
        raise _fail(
            f"Cannot read the security events ({type(exc).__name__}); is the "
            "database migrated (bastion migrate)?"
        ) from exc
    raise typer.Exit(code)


@events_app.command("purge")
def events_purge(
    older_than: Annotated[
        int | None,
        typer.Option(
            "--older-than",
            min=1,
            help="Days to keep (default: BASTION_EVENT_RETENTION_DAYS).",
        ),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Purge without asking.")] = False,
) -> None:
    """Delete the security events older than the retention period, keeping the chain
    verifiable: a signed checkpoint records what went, and an events_purged event says
    who purged what. Asks first, unless --yes.
    """
    settings, key = _chained_database("no stored events to purge")
    now = SystemClock().now()
    days = older_than or settings.event_retention_days
    before = now - timedelta(days=days)
    if not yes and not typer.confirm(
        f"Delete the security events older than {days} days (before {before:%Y-%m-%d %H:%M} UTC)?"
    ):
        raise _fail("Nothing purged.", 1)

    async def run() -> Checkpoint | ChainReport | None:
        stores = open_stores(settings.database_url, event_chain_key=key)
        try:
            assert isinstance(stores.events, SQLEventStore)
            assert stores.engine is not None
            # A purge signs what it keeps: it must not sign over tampering it would hide.
            report = await verify_events(stores.engine, key, console)
            if not report.intact:
                return report
            return await stores.events.purge(before, now=now)
        finally:
            await stores.aclose()

    try:
        checkpoint = asyncio.run(run())
    except ChainBrokenError as exc:
        raise _fail(f"Refusing to purge: {exc}.", 1) from exc
    except (SQLAlchemyError, OSError) as exc:
        raise _fail(
            f"Cannot purge the security events ({type(exc).__name__}); is the "
            "database migrated (bastion migrate)?"
        ) from exc
    if isinstance(checkpoint, ChainReport):
        print_report(checkpoint, Console(highlight=False))
        raise _fail("Refusing to purge a chain that does not verify: nothing purged.", 1)
    if checkpoint is None:
        typer.echo(f"nothing to purge: no events before {before:%Y-%m-%d %H:%M} UTC")
        return
    typer.echo(
        f"purged {checkpoint.purged} events (through row {checkpoint.through_id}); "
        f"checkpoint {checkpoint.id}"
    )


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app()
