"""Every command: `flask --app wsgi <command>`. Each is thin: read settings, call one function.

| command | calls |
| --- | --- |
| `init-db` | `store.migrate` |
| `submit` | `submitter.submit` |
| `consume-mns` | `receiver.inbound.mns.run` |
| `pull-tencent` | `receiver.inbound.tencent_pull.run` |
| `reconcile` | `receiver.background.reconcile.run` |
| `replay` | the ledger's stored events, through today's parsers |
| `deliver` | `receiver.background.deliver.run` |
| `endpoints add/list/disable/enable` | the ledger's `endpoints` part |
"""

import contextlib
import functools
import json
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any, TextIO

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from store import LedgerUnavailable, is_url, migrate, open_ledger
from store.backend import redact
from store.endpoints import BadEndpoint
from submitter import NotConfigured, UsageError, submit
from submitter.operations import required_params

from . import ledger_setup
from .background import deliver, reconcile
from .inbound import mns, tencent_pull
from .inbound.batch import Misconfigured, RunResult
from .ops import replay as replaying
from .ops.api import submit_budget
from .ops.endpoints_api import check_fields


def ledger():
    """Open the app's ledger for one command."""
    return open_ledger(current_app.config["DATABASE"], current_app.config["DURABILITY"])


def explained(command: Callable) -> Callable:
    """End a command with one line instead of a traceback when the ledger is not usable.

    An unreachable server, or a ledger that is not set up (no role, no database, no
    privilege, no init-db), is the operator's to fix: the line says what to run.
    """

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise  # already said as the command means it
        except Exception as e:
            advice = ledger_setup.explain(current_app.config["DATABASE"], e)
            if advice is not None:
                raise click.ClickException(advice) from None
            if isinstance(e, LedgerUnavailable):
                raise click.ClickException(str(e)) from None
            raise

    return run


@click.command("init-db", short_help="Create or migrate the ledger; safe to run again.")
@with_appcontext
@explained
def init_db():
    """Create or migrate the ledger; safe to run again.

    \b
    flask --app wsgi init-db
    """
    database = current_app.config["DATABASE"]
    applied = migrate(database)
    shown = redact(database) if is_url(database) else database
    click.echo(f"ledger {shown}: " + (f"applied {', '.join(applied)}" if applied else "up to date"))


@click.command("replay", short_help="Re-apply stored events or quarantined bodies.")
@click.option("--quarantined", is_flag=True, help="Replay quarantined bodies instead of events.")
@click.option("--provider", multiple=True, metavar="NAME", help="aliyun or tencent (repeatable).")
@click.option(
    "--service",
    multiple=True,
    metavar="NAME",
    help="vod, mps or live; mns for quarantined MNS bodies (repeatable).",
)
@click.option("--source", multiple=True, metavar="NAME", help="http, mns or pull (repeatable).")
@click.option(
    "--event-type", multiple=True, metavar="TYPE", help="Stored events of this type (repeatable)."
)
@click.option("--since", metavar="TIME", help="Received at or after (ISO 8601, UTC by default).")
@click.option("--until", metavar="TIME", help="Received at or before (ISO 8601).")
@click.option("--all", "everything", is_flag=True, help="Every stored event (no filter).")
@click.option("--dry-run", is_flag=True, help="Only say how many would be replayed.")
@click.argument("ids", nargs=-1, type=int)
@with_appcontext
@explained
def replay(quarantined: bool, ids: tuple[int, ...], dry_run: bool, **options):
    """Re-apply stored events, or quarantined bodies, through today's parsers.

    With --quarantined, parse waiting quarantined bodies again (all, IDS, or those the
    filters match) and record those that now parse. Without it, re-apply the stored
    provider notices IDS, or those the filters (or --all) match, oldest first; a replay
    never moves a final state back. Prints one JSON line per item (with "changed"), a
    progress bar and the totals on stderr; exit 1 if any item failed.

    \b
    flask --app wsgi replay --quarantined
    flask --app wsgi replay 41 42
    flask --app wsgi replay --provider tencent --event-type ProcedureStateChanged \\
        --since 2026-11-20T00:00Z
    """
    doc = {
        "target": "quarantine" if quarantined else "events",
        "ids": list(ids),
        "provider": list(options["provider"]),
        "service": list(options["service"]),
        "source": list(options["source"]),
        "event_type": list(options["event_type"]),
        "since": options["since"],
        "until": options["until"],
        "all": options["everything"],
    }
    narrowed = any(doc[k] for k in ("provider", "service", "source", "event_type", "since"))
    if not (quarantined or ids or narrowed or doc["until"] or doc["all"]):
        raise click.UsageError("give event IDS, a filter, --all, or --quarantined")
    try:
        selection = replaying.selection_from(doc)
    except replaying.BadSelection as e:
        # The message starts with the parameter's name: say it as the option is spelled.
        name = "IDS" if e.parameter == "ids" else "--" + e.parameter.replace("_", "-")
        message = e.description or ""
        if message.startswith(e.parameter):
            message = name + message[len(e.parameter) :]
        raise click.UsageError(message) from None
    stderr = sys.stderr  # read now: a test runner swaps it per invocation
    with ledger() as led:
        if dry_run:
            click.echo(
                json.dumps({**selection.describe(), "matched": replaying.count(led, selection)})
            )
            return
        matched = replaying.count(led, selection)
        label = f"Replaying {matched} {replaying.item_noun(selection.target, matched)}"
        with progress(matched, label, stderr) as (bar, above):

            def each(result) -> None:
                above(lambda: _print_replayed(result))
                bar.update(1)

            totals = replaying.run(led, selection, each=each)
    click.echo(totals.summary(), err=True)
    if totals.failed:
        raise click.exceptions.Exit(1)


@contextlib.contextmanager
def progress(length: int, label: str, stream: TextIO) -> Iterator[tuple[Any, Callable]]:
    """Draw a progress bar on `stream`; yield it, and a way to print a line above it.

    On a terminal the bar is redrawn in place, so nothing else may write on its line: the
    app's INFO log lines (one per item) are held back while it is drawn, and an output
    line clears the bar and draws it again below itself. Elsewhere (a file, a pipe) the
    bar is only its label, and nothing is held back.
    """
    with click.progressbar(length=length, label=label, file=stream) as bar:
        if not stream.isatty():
            yield bar, lambda write: write()
            return
        logger = logging.getLogger("jobledger")
        level = logger.level
        logger.setLevel(logging.WARNING)

        def above(write: Callable[[], None]) -> None:
            stream.write("\r\033[K")
            stream.flush()
            write()
            sys.stdout.flush()
            stream.write(bar.format_progress_line())
            stream.flush()

        try:
            yield bar, above
        finally:
            logger.setLevel(level)


def _print_replayed(result) -> None:
    """Print one replayed item as a JSON line, or why it failed on stderr."""
    label = "quarantine" if result.target == "quarantine" else "event"
    if not result.ok:
        if result.problem == "unparseable":
            why = "still unparseable: " + result.error.removeprefix("does not parse: ")
        else:
            why = f"not replayed: {result.error}"
        click.echo(f"{label} {result.id}: {why}", err=True)
        return
    key = "quarantine_id" if result.target == "quarantine" else "replay_of"
    line = {key: result.id, **result.as_dict()}
    for field in ("target", "id", "ok", "error"):
        line.pop(field, None)
    click.echo(json.dumps(line))


def finish(run) -> None:
    """Run a worker; print its summary lines; exit 1 (or 2 for a missing setting) on error."""
    try:
        result: RunResult = run()
    except Misconfigured as e:
        raise click.UsageError(str(e)) from None
    for line in result.lines:
        click.echo(json.dumps(line))
    if result.error:
        raise click.ClickException(result.error)


class SubmitCommand(click.Command):
    """`submit`, whose help lists every operation and the params it needs."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Operations (and the params each one needs)"):
            formatter.write_dl(required_params(), col_max=36)
        super().format_epilog(ctx, formatter)


def parse_assignments(items: tuple[str, ...]) -> dict:
    """Read `KEY=VALUE` (text) and `KEY:=JSON` (a JSON value: object, list, number) args."""
    params: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.rstrip(":"):
            raise click.UsageError(f"expected KEY=VALUE or KEY:=JSON, got {item!r}")
        if key.endswith(":"):
            key = key[:-1]
            try:
                params[key] = json.loads(value)
            except ValueError as e:
                raise click.UsageError(f"{key}:= needs a JSON value: {e}") from None
        else:
            params[key] = value
    return params


@click.command(
    "submit", cls=SubmitCommand, short_help="Submit one job to its provider; print it as JSON."
)
@click.argument("operation")
@click.argument("params", nargs=-1)
@click.option(
    "--metadata",
    metavar="JSON",
    help="The application's own JSON object (at most 4 KiB), kept on the job and sent in"
    " every message about it.",
)
@with_appcontext
@explained
def submit_command(operation: str, params: tuple[str, ...], metadata: str | None):
    """Submit one job to its provider and print the job as JSON; exit 1 if not accepted.

    Values are text; `KEY:=JSON` passes a JSON value (nested params such as fileList).
    Other params of the provider's API pass through unchanged.

    \b
    flask --app wsgi submit aliyun.vod.SubmitPreprocessJobs VideoId=5aed81b74ba84920be578cdfe004af4b
    flask --app wsgi submit tencent.vod.RunProcedure inputType=MultiFile \\
        procedure='QCVB_SimpleProcessFile(1,1,10,10)' fileList:='[{"id": "1"}, {"id": "2"}]'
    flask --app wsgi submit aliyun.vod.SubmitPreprocessJobs VideoId=5aed81b7 \\
        --metadata '{"order": "A-1042"}'
    """
    values = parse_assignments(params)
    meta = None
    if metadata is not None:
        try:
            meta = json.loads(metadata)
        except ValueError as e:
            raise click.UsageError(f"--metadata needs a JSON object: {e}") from None
    with ledger() as led:
        try:
            result = submit(
                led,
                current_app.config,
                operation,
                values,
                budget_s=submit_budget(),
                metadata=meta,
            )
        except UsageError as e:
            raise click.UsageError(str(e)) from None
        except NotConfigured as e:
            raise click.ClickException(str(e)) from None
    click.echo(json.dumps(result.job, ensure_ascii=False, indent=2))
    if not result.accepted:
        click.echo(f"Error: {result.describe_error()}", err=True)
        raise click.exceptions.Exit(1)


@click.command("consume-mns", short_help="Record MNS queue messages, then delete them.")
@click.option(
    "--queue",
    "queues",
    multiple=True,
    metavar="NAME",
    help="Queue to consume (repeatable). Default: RECEIVER_MNS_QUEUES.",
)
@click.option("--once", is_flag=True, help="Stop when every queue is empty.")
@click.option(
    "--wait-seconds",
    type=click.IntRange(0, 30),
    default=None,
    help=f"Long-poll time. Default: {mns.WAIT_SECONDS}, or {mns.ONCE_WAIT_SECONDS} with --once.",
)
@with_appcontext
@explained
def consume_mns_command(queues: tuple[str, ...], once: bool, wait_seconds: int | None):
    """Consume MNS queues: record each message, then delete it.

    Runs until SIGTERM/SIGINT, then finishes the batch in hand and exits 0. With --once,
    stops when every queue is empty; exit 1 if messages were left for redelivery.

    \b
    flask --app wsgi consume-mns
    flask --app wsgi consume-mns --queue vod-events --once
    """
    config = current_app.config
    finish(lambda: mns.run(config, list(queues), once=once, wait_seconds=wait_seconds))


@click.command("pull-tencent", short_help="Record Tencent VOD reliable events, then confirm.")
@click.option("--once", is_flag=True, help="Stop when no event is waiting.")
@click.option(
    "--api",
    "api",
    type=click.Choice(["auto", "v3", "v2", "both"]),
    default="auto",
    show_default=True,
    help="auto: API 3.0, plus v2 when RECEIVER_TENCENT_VOD_V2_URL is set.",
)
@with_appcontext
@explained
def pull_tencent_command(once: bool, api: str):
    """Consume Tencent VOD reliable-callback events: record each, then confirm it.

    Runs until SIGTERM/SIGINT, then finishes the events in hand (at most one pull, up to
    5 s) and exits 0. With --once, stops when every API has no event waiting.

    \b
    flask --app wsgi pull-tencent
    flask --app wsgi pull-tencent --once --api both
    """
    config = current_app.config
    finish(lambda: tencent_pull.run(config, once=once, api=api))


@click.command("reconcile", short_help="Poll providers, time out jobs, send alerts.")
@click.option("--once", is_flag=True, help="Run one pass and exit, instead of looping.")
@with_appcontext
@explained
def reconcile_command(once: bool):
    """Poll providers for jobs without a final word, and record what they say.

    Also marks jobs past their deadline `timed_out`, sends due alerts, and prunes old
    payloads. Without --once it loops until SIGTERM or SIGINT, finishing the job in hand.

    \b
    flask --app wsgi reconcile --once
    """
    config = current_app.config
    finish(lambda: reconcile.run(config, once=once))


@click.command("deliver", short_help="Send job state changes to the endpoints.")
@click.option("--once", is_flag=True, help="Stop when nothing is due now, instead of looping.")
@with_appcontext
@explained
def deliver_command(once: bool):
    """Send job state changes to the endpoints: signed, in order per job, retried.

    Runs until SIGTERM or SIGINT, finishing the attempts in hand; any number may run at
    once. With --once, stops when no message is due now and prints what it did.

    \b
    flask --app wsgi deliver
    flask --app wsgi deliver --once
    """
    config = current_app.config
    finish(lambda: deliver.run(config, once=once))


@click.group("endpoints")
def endpoints_group():
    """Manage the endpoints that hear of job state changes.

    \b
    flask --app wsgi endpoints add https://app.example.com/hooks --filter state=failed
    flask --app wsgi endpoints list
    """


@endpoints_group.command("add")
@click.argument("url")
@click.option(
    "--filter",
    "filters",
    multiple=True,
    metavar="KEY=VALUE",
    help="Only jobs whose KEY (provider, service, kind, state, origin) is VALUE; repeat a"
    " key for several values.",
)
@click.option("--description", metavar="TEXT", help="What the endpoint is for.")
@with_appcontext
@explained
def endpoints_add(url: str, filters: tuple[str, ...], description: str | None):
    """Register an endpoint; print it as JSON with its signing secret (shown this once).

    \b
    flask --app wsgi endpoints add https://app.example.com/hooks \\
        --filter provider=aliyun --filter state=succeeded --filter state=failed
    flask --app wsgi endpoints add arn:aws:sns:cn-north-1:123456789012:jobs.fifo
    """
    flt: dict[str, list[str]] = {}
    for item in filters:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise click.UsageError(f"--filter expects KEY=VALUE, got {item!r}")
        flt.setdefault(key.strip(), []).append(value.strip())
    doc = {"url": url, "filter": flt, "description": description}
    try:
        fields = check_fields(doc, current_app.config, creating=True)
    except BadEndpoint as e:
        raise click.UsageError(str(e)) from None
    with ledger() as led:
        click.echo(json.dumps(led.endpoints.create(**fields), indent=2))


@endpoints_group.command("list")
@with_appcontext
@explained
def endpoints_list():
    """Print every endpoint with its health, as JSON (never a secret).

    \b
    flask --app wsgi endpoints list
    """
    with ledger() as led:
        click.echo(json.dumps(led.endpoints.all(), indent=2))


def _set_enabled(endpoint_id: str, enabled: bool) -> None:
    with ledger() as led:
        endpoint = led.endpoints.update(endpoint_id, {"enabled": enabled})
    if endpoint is None:
        raise click.ClickException(f"no endpoint {endpoint_id}")
    click.echo(json.dumps(endpoint, indent=2))


@endpoints_group.command("disable")
@click.argument("endpoint_id", metavar="ID")
@with_appcontext
@explained
def endpoints_disable(endpoint_id: str):
    """Stop sending to an endpoint; its messages wait, pending, until it is enabled.

    \b
    flask --app wsgi endpoints disable 01JD3N5V0Q8RZ6G2S4T7W9XK1M
    """
    _set_enabled(endpoint_id, False)


@endpoints_group.command("enable")
@click.argument("endpoint_id", metavar="ID")
@with_appcontext
@explained
def endpoints_enable(endpoint_id: str):
    """Send to an endpoint again, starting with what waited while it was disabled.

    \b
    flask --app wsgi endpoints enable 01JD3N5V0Q8RZ6G2S4T7W9XK1M
    """
    _set_enabled(endpoint_id, True)


COMMANDS = (
    init_db,
    submit_command,
    consume_mns_command,
    pull_tencent_command,
    reconcile_command,
    replay,
    deliver_command,
    endpoints_group,
)


def init_app(app: Flask) -> None:
    """Register every command."""
    for command in COMMANDS:
        if command.name not in app.cli.commands:
            app.cli.add_command(command)
