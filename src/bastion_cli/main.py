"""Operators' commands.

Settings come from ``BASTION_*`` variables or ``.env``, as for the service.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Column, Table
from sqlalchemy.exc import SQLAlchemyError

from bastion import __version__
from bastion.accounts import ROLES, InvalidEmailError, normalize_email
from bastion.clock import SystemClock
from bastion.config import BastionSettings, check_settings
from bastion.errors import (
    BastionError,
    ConfigurationError,
    DatabaseUnavailableError,
    PasswordPolicyError,
)
from bastion.events import EventLog, JSONLinesSink, RequestContext, StoreSink
from bastion.events.chain import (
    HEAD_FILE,
    ChainBrokenError,
    ChainHead,
    ChainReport,
    Checkpoint,
    read_head,
)
from bastion.runtime import key_retention, open_security
from bastion.stores import open_stores
from bastion.stores.sql import SQLEventStore
from bastion.tokens import KeySet, ensure_key_file, load_key_file, purposes, save_key_file
from bastion_cli.chain import chain_key, parse_head, print_report, verify_events
from bastion_cli.events import JSONLinesPrinter, TablePrinter, tail
from bastion_tasks.settings import TaskSettings

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


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"bastion {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_print_version, is_eager=True
        ),
    ] = False,
) -> None:
    """Bastion: the security layer and task service."""


_S = TypeVar("_S", bound=BastionSettings)


def _settings() -> BastionSettings:
    """The core's settings: every command but ``serve`` works on the core only."""
    return _read_settings(BastionSettings)


def _task_settings() -> TaskSettings:
    """The task service's settings, checked before ``serve`` starts any worker."""
    return _read_settings(TaskSettings)


def _read_settings(kind: type[_S]) -> _S:
    try:
        return kind()
    except ValueError as exc:
        console.print(f"[red]Invalid settings:[/red] {exc}")
        raise typer.Exit(2) from exc


def _fail(message: str, code: int = 1) -> typer.Exit:
    console.print(f"[red]{message}[/red]")
    return typer.Exit(code)


def _migrate_embedded(settings: BastionSettings) -> None:
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

    settings = _task_settings()
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
def migrate(
    core_only: Annotated[
        bool,
        typer.Option(
            "--core-only",
            help="Only the security core's tables (accounts, sessions, tokens, events, "
            "alerts), for the database of an application using Bastion as a library; "
            "without it, the task service's tables too.",
        ),
    ] = False,
) -> None:
    """Apply the database migrations of the task service (core and task tables), or of
    the security core alone. A database of the former single history (0001 to 0010) is
    moved onto the current ones, keeping every row."""
    from alembic.util import CommandError

    if core_only:
        from bastion.migrate import upgrade
    else:
        from bastion_tasks.migrate import upgrade

    settings = _settings()
    try:
        upgrade(settings.database_url)
    except CommandError as exc:
        raise _fail(f"Migration refused: {exc}") from exc
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
            account = await security.accounts.login.register(
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


@users_app.command("mfa-reset")
def users_mfa_reset(
    email: Annotated[str, typer.Argument(help="The account's email address.")],
) -> None:
    """Turn off the second factor of an account whose owner lost it (after checking who
    asks): an mfa_disabled event, and a notice to the account's address."""
    settings = _settings()
    _migrate_embedded(settings)

    async def reset() -> bool | None:
        security = open_security(settings)
        try:
            _, key = normalize_email(email)
            account = await security.stores.accounts.get_by_email(key)
            if account is None or security.accounts.mfa is None:
                return None
            done = await security.accounts.mfa.reset(
                account.id, context=RequestContext(), by="an operator (bastion users mfa-reset)"
            )
            await security.drain()
            return done
        finally:
            await security.aclose()

    try:
        done = asyncio.run(reset())
    except InvalidEmailError as exc:
        raise _fail(f"Invalid email: {exc}") from exc
    except BastionError as exc:
        raise _fail(str(exc)) from exc
    if done is None:
        raise _fail("No account with this email.")
    if not done:
        console.print(f"{email} has no second factor; nothing changed.")
        return
    console.print(f"The second factor of {email} is off; its owner was told by email.")


def _keys_settings() -> BastionSettings:
    settings = _settings()
    if settings.jwt_algorithm == "HS256":
        raise _fail(
            "BASTION_JWT_ALGORITHM is HS256: the key is BASTION_JWT_SECRET, not a key file."
        )
    return settings


def _record_key_event(
    settings: BastionSettings, keys: KeySet, event_type: str, **extra: Any
) -> None:
    """Store ``event_type`` in the security event log (and print it as the service does);
    a database that cannot take it leaves the key change made, with a warning."""
    if settings.database_url.startswith("memory://"):
        return  # the events live in the service's process: nothing to write to
    sinks: list[JSONLinesSink | StoreSink] = []

    async def record() -> bool:
        stores = open_stores(
            settings.database_url, event_chain_key=keys.derive_secret(purposes.EVENT_CHAIN)
        )
        sinks.append(StoreSink(stores.events))
        if settings.log_events_to_stdout:
            sinks.append(JSONLinesSink())
        events = EventLog(sinks)
        try:
            await events.emit(event_type, details=f"bastion keys: {event_type}", **extra)
            return events.failed == 0
        finally:
            await events.aclose()
            await stores.aclose()

    problem = "the event store refused it"
    try:
        _migrate_embedded(settings)
        recorded = asyncio.run(record())
    except Exception as exc:  # the key change is made: say so, whatever failed here
        recorded, problem = False, type(exc).__name__
    if not recorded:
        console.print(f"[yellow]The {event_type} event could not be stored ({problem}).[/yellow]")


def _write_keys(settings: BastionSettings, keys: KeySet, clock: SystemClock) -> list[str]:
    """Prune the retired keys past their retention and save; the pruned kids."""
    removed = keys.prune(clock=clock, keep_for=key_retention(settings))
    save_key_file(settings.keys_path, keys)
    return removed


def _load_keys_or_fail(settings: BastionSettings) -> KeySet:
    try:
        return load_key_file(settings.keys_path)
    except ConfigurationError as exc:
        raise _fail(str(exc)) from exc


@contextmanager
def _key_file_lock(settings: BastionSettings) -> Iterator[None]:
    """Hold an exclusive lock beside the key file while it is read, changed and written:
    of a rotation and a revocation at the same moment, neither writes back a ring read
    before the other's write (a revoked key must never return)."""
    path = settings.keys_path
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a") as handle:
        if os.name == "posix":
            import fcntl

            fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        yield


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Add a new signing key. The old one verifies the tokens it signed until they have
    expired (the access-token lifetime plus 30 s), then leaves the ring and the JWKS."""
    settings = _keys_settings()
    clock = SystemClock()
    path = settings.keys_path
    if not path.exists():
        ensure_key_file(path, settings.jwt_algorithm, clock=clock)
        keys = load_key_file(path)
        console.print(f"Created {path} with signing key {keys.signing_key.kid}.")
        return
    with _key_file_lock(settings):
        keys = _load_keys_or_fail(settings)
        old_kid = keys.signing_key.kid
        new_key = keys.rotate(clock=clock, alg=settings.jwt_algorithm)
        removed = _write_keys(settings, keys, clock)
    console.print(f"New signing key {new_key.kid}; removed expired keys: {removed or 'none'}.")
    console.print("Running instances sign with it within a second, without a restart.")
    _record_key_event(settings, keys, "key_rotated", kid=new_key.kid, retired_kid=old_kid)


@keys_app.command("revoke")
def keys_revoke(
    kid: Annotated[
        str,
        typer.Argument(
            help="The kid of the key to remove (see keys list); put -- before one that "
            "starts with a dash."
        ),
    ],
    rotate: Annotated[
        bool,
        typer.Option("--rotate", help="Revoke the signing key too: a new key signs from now on."),
    ] = False,
) -> None:
    """Remove a signing key at once, for a key that leaked: every token it signed is
    refused from then on. Running instances drop it within a second, without a restart.

    The key that signs now is revoked only with --rotate, which puts a new signing key in
    its place in the same write (its users sign in again through their refresh tokens).
    """
    settings = _keys_settings()
    clock = SystemClock()
    with _key_file_lock(settings):
        keys = _load_keys_or_fail(settings)
        if keys.get(kid) is None:
            raise _fail(f"No key {kid!r} in {settings.keys_path} (see bastion keys list).")
        new_kid = None
        if kid == keys.signing_key.kid:
            if not rotate:
                raise _fail(
                    f"Key {kid} signs the tokens now: pass --rotate to sign with a new key "
                    "and revoke this one in one step.",
                    2,
                )
            new_kid = keys.rotate(clock=clock, alg=settings.jwt_algorithm).kid
        keys.revoke(kid)
        _write_keys(settings, keys, clock)
    if new_kid is not None:
        console.print(f"New signing key {new_kid}.")
    console.print(f"Revoked {kid}: running instances refuse its tokens within a second.")
    extra = {"kid": kid} if new_kid is None else {"kid": kid, "new_kid": new_kid}
    _record_key_event(settings, keys, "key_revoked", **extra)


@keys_app.command("list")
def keys_list() -> None:
    """Show the signing keys (never their private material)."""
    settings = _keys_settings()
    keys = _load_keys_or_fail(settings)
    now, retention = SystemClock().now(), key_retention(settings)
    # The kid is copied into ``keys revoke``: never wrapped or cut.
    kid = Column("kid", no_wrap=True, min_width=max(len(key.kid) for key in keys.keys))
    table = Table(kid, "alg", "created", "retired", "verifies until", "signs")
    signing = keys.signing_key.kid
    for key in keys.keys:
        if key.retired_at is None:
            until = "-"
        elif key.expired(now, retention):
            until = "expired (removed at the next write)"
        else:
            until = (key.retired_at + retention).isoformat()
        table.add_row(
            key.kid,
            key.alg,
            key.created_at.isoformat(),
            key.retired_at.isoformat() if key.retired_at else "-",
            until,
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
    except (SQLAlchemyError, OSError, DatabaseUnavailableError) as exc:
        raise _fail(
            f"Cannot read the security events ({type(exc).__name__}); is the "
            "database migrated (bastion migrate)?"
        ) from exc


def _chained_database(memory_reason: str) -> tuple[BastionSettings, bytes]:
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
def events_verify(
    head_text: Annotated[
        str | None,
        typer.Option(
            "--head",
            metavar="SEQ:MAC",
            help="A chain head from a shipped JSON event line (its chain seq and mac), "
            "checked instead of the head file.",
        ),
    ] = None,
) -> None:
    """Verify the tamper-evident chain of the stored security events.

    Prints "chain intact: N events" and exits 0, or the first row that was modified,
    deleted after, inserted or stripped of its chain, or the events missing against the
    chain head (the head file in the data folder, or --head), and exits 1. Reads the
    configured database, key file and head file.
    """
    settings, key = _chained_database("the events are not chained")
    head_file = settings.data_dir / HEAD_FILE
    head: ChainHead | None
    try:
        if head_text is not None:
            head, head_name = parse_head(head_text), "the head given"
        else:
            head, head_name = read_head(head_file), "the head file"
    except ValueError as exc:
        raise _fail(f"{head_text or head_file}: {exc}", 2) from exc
    if head is None:
        console.print(
            f"no chain head at {head_file} (nor --head): events deleted from the end of "
            "the log cannot be found"
        )

    async def run() -> int:
        stores = open_stores(settings.database_url)
        try:
            assert stores.engine is not None  # a SQL database URL
            report = await verify_events(
                stores.engine, key, console, head=head, head_name=head_name
            )
        finally:
            await stores.aclose()
        return print_report(report, Console(highlight=False))

    try:
        code = asyncio.run(run())
    except (SQLAlchemyError, OSError, DatabaseUnavailableError) as exc:
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

    head_file = settings.data_dir / HEAD_FILE
    try:
        head = read_head(head_file)
    except ValueError as exc:
        raise _fail(str(exc), 2) from exc

    async def run() -> Checkpoint | ChainReport | None:
        stores = open_stores(settings.database_url, event_chain_key=key, event_chain_head=head_file)
        try:
            assert isinstance(stores.events, SQLEventStore)
            assert stores.engine is not None
            # A purge signs what it keeps: it must not sign over tampering it would hide.
            report = await verify_events(
                stores.engine, key, console, head=head, head_name="the head file"
            )
            if not report.intact:
                return report
            return await stores.events.purge(before, now=now)
        finally:
            await stores.aclose()

    try:
        checkpoint = asyncio.run(run())
    except ChainBrokenError as exc:
        raise _fail(f"Refusing to purge: {exc}.", 1) from exc
    except (SQLAlchemyError, OSError, DatabaseUnavailableError) as exc:
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
