"""Commands: `flask --app wsgi <command>`. Thin: read settings, call store and providers."""

import json

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from store import LedgerUnavailable, is_url, migrate, open_ledger
from store.backend import redact

from .providers import InvalidPayload, get_provider, queue


def ledger():
    """Open the app's ledger for one command; an unreachable server ends it with a message."""
    try:
        return open_ledger(current_app.config["DATABASE"], current_app.config["DURABILITY"])
    except LedgerUnavailable as e:
        raise click.ClickException(str(e)) from None


def parse_stored(provider: str, service: str, source: str, payload: str | bytes):
    """Parse a stored body again with today's parsers, the way it first arrived."""
    if source == "mns":
        return queue.parse(payload if isinstance(payload, str) else payload.decode("utf-8"))
    return get_provider(f"{provider}_{service}").parse(payload)


@click.command("init-db")
@with_appcontext
def init_db():
    """Create or migrate the ledger; safe to run again.

    \b
    flask --app wsgi init-db
    """
    database = current_app.config["DATABASE"]
    try:
        applied = migrate(database)
    except LedgerUnavailable as e:
        raise click.ClickException(str(e)) from None
    shown = redact(database) if is_url(database) else database
    click.echo(f"ledger {shown}: " + (f"applied {', '.join(applied)}" if applied else "up to date"))


@click.command("replay")
@click.option("--quarantined", is_flag=True, help="Replay quarantined bodies instead of events.")
@click.argument("ids", nargs=-1, type=int)
@with_appcontext
def replay(quarantined: bool, ids: tuple[int, ...]):
    """Re-apply stored events (after an upgrade that fixed a parser).

    With --quarantined, parse the quarantined bodies again (all pending ones, or IDS) and
    record those that now parse. Without it, re-apply the events IDS; a replay never moves
    a final state back.

    \b
    flask --app wsgi replay --quarantined
    flask --app wsgi replay 41 42
    """
    if not quarantined and not ids:
        raise click.UsageError("give event IDS, or --quarantined")
    failed = 0
    with ledger() as led:
        if quarantined:
            for row in led.quarantined(ids or None):
                try:
                    event = parse_stored(
                        row["provider"], row["service"], row["source"], row["body"]
                    )
                except (InvalidPayload, UnicodeDecodeError, LookupError) as e:
                    failed += 1
                    click.echo(f"quarantine {row['id']}: still unparseable: {e}", err=True)
                    continue
                result = led.record_event(
                    event, source=row["source"], verified=bool(row["verified"]), auth=row["auth"]
                )
                led.mark_replayed(row["id"], result.event_id)
                click.echo(
                    json.dumps(
                        {
                            "quarantine_id": row["id"],
                            "event_id": result.event_id,
                            "job_id": result.job_id,
                            "state": result.state,
                        }
                    )
                )
        else:
            for event_id in ids:
                stored = led.get_event(event_id)
                if stored is None or stored["payload"] is None:
                    failed += 1
                    click.echo(f"event {event_id}: not found, or its payload was pruned", err=True)
                    continue
                try:
                    event = parse_stored(
                        stored["provider"], stored["service"], stored["source"], stored["payload"]
                    )
                except (InvalidPayload, LookupError) as e:
                    failed += 1
                    click.echo(f"event {event_id}: unparseable: {e}", err=True)
                    continue
                result = led.record_event(
                    event,
                    source=stored["source"],
                    verified=stored["verified"],
                    auth=stored["auth"],
                    replay_of=event_id,
                )
                click.echo(
                    json.dumps(
                        {
                            "replay_of": event_id,
                            "event_id": result.event_id,
                            "job_id": result.job_id,
                            "state": result.state,
                        }
                    )
                )
    if failed:
        raise click.exceptions.Exit(1)


def init_app(app: Flask) -> None:
    """Register the commands."""
    for command in (init_db, replay):
        app.cli.add_command(command)
