"""Submitting jobs: `POST /api/jobs` and `flask --app wsgi submit`, both thin over `submitter`.

Answers of `POST /api/jobs`:

| outcome | status | body |
| --- | --- | --- |
| accepted | 201 | the job |
| unknown operation, bad or missing params | 400 | error, nothing recorded |
| provider credentials not configured | 503 | error naming the settings, nothing recorded |
| the provider refused (its code, message) | 422 | error, provider_status, job (`submit_failed`) |
| throttled or 5xx past the 5 s budget, or unreachable | 502 | error, job (`submit_failed`) |
| sent, but no answer: outcome unknown | 504 | error, job (still `submitting`) |

A refusal is 422 rather than the provider's own 403/404: those would read as "no such
route" or "your ops token may not do this". The provider's HTTP status is in the body.
"""

import json
import logging

import click
from flask import Blueprint, Flask, current_app, jsonify, request
from flask.cli import with_appcontext

from submitter import NotConfigured, Submission, UsageError, submit
from submitter.calls import INTERACTIVE_BUDGET_S, NETWORK_ERROR

from .auth import require_ops
from .cli import ledger as open_app_ledger
from .db import get_ledger
from .errors import error_response

bp = Blueprint("submissions", __name__, url_prefix="/api")
log = logging.getLogger("jobledger.submissions")


@bp.before_request
def _ops_only():
    require_ops()


def failure_status(result: Submission) -> int:
    """Pick the HTTP status for a submission the provider did not accept."""
    e = result.error
    if e.outcome_unknown:
        return 504
    if e.code == NETWORK_ERROR or e.retryable:
        return 502
    return 422


def _budget() -> float:
    # Internal knob (tests shorten it); not a RECEIVER_* setting of the contract.
    return float(current_app.config.get("SUBMIT_BUDGET_S") or INTERACTIVE_BUDGET_S)


@bp.post("/jobs")
def create_job():
    """Submit a job: {"operation": NAME, "params": {...}}; answer with the recorded job."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("operation"), str):
        return error_response(400, 'expected a JSON object {"operation": NAME, "params": {...}}')
    try:
        result = submit(
            get_ledger(),
            current_app.config,
            body["operation"],
            body.get("params") or {},
            budget_s=_budget(),
        )
    except UsageError as e:
        return error_response(400, str(e))
    except NotConfigured as e:
        log.error("submissions.not-configured", extra={"error": str(e)})
        return error_response(503, str(e))
    if result.accepted:
        response = jsonify(result.job)
        response.status_code = 201
        response.headers["Location"] = f"/api/jobs/{result.job['id']}"
        return response
    extra = {"provider_status": result.error.status} if result.error.status else {}
    return error_response(failure_status(result), result.describe_error(), job=result.job, **extra)


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


@click.command("submit")
@click.argument("operation")
@click.argument("params", nargs=-1)
@with_appcontext
def submit_command(operation: str, params: tuple[str, ...]):
    """Submit one job to its provider and print the job as JSON; exit 1 if not accepted.

    Values are text; `KEY:=JSON` passes a JSON value (nested params such as fileList).

    \b
    flask --app wsgi submit aliyun.vod.SubmitPreprocessJobs VideoId=5aed81b74ba84920be578cdfe004af4b
    flask --app wsgi submit tencent.vod.RunProcedure inputType=MultiFile \\
        procedure='QCVB_SimpleProcessFile(1,1,10,10)' fileList:='[{"id": "1"}, {"id": "2"}]'
    """
    values = parse_assignments(params)
    with open_app_ledger() as led:
        try:
            result = submit(led, current_app.config, operation, values, budget_s=_budget())
        except UsageError as e:
            raise click.UsageError(str(e)) from None
        except NotConfigured as e:
            raise click.ClickException(str(e)) from None
    click.echo(json.dumps(result.job, ensure_ascii=False, indent=2))
    if not result.accepted:
        click.echo(f"Error: {result.describe_error()}", err=True)
        raise click.exceptions.Exit(1)


def register(app: Flask) -> None:
    """Add `POST /api/jobs` and the `submit` and `reconcile` commands to the app (once)."""
    from .reconcile import reconcile_command

    if bp.name in app.blueprints:
        return
    app.register_blueprint(bp)
    for command in (submit_command, reconcile_command):
        app.cli.add_command(command)
