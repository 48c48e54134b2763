"""Docs that cannot drift: every command, option and operation is documented.

In sqlite-utils' manner: the commands and their options are read from the CLI itself, the
operations from submitter/operations.py, and each must appear in the documents a reader
is sent to. The help a person sees first must fit: no description cut with "...".
"""

import os
import re
import subprocess
import sys

import click
import pytest

from receiver.cli import COMMANDS
from submitter.operations import OPERATIONS, required_params
from tests.doc_blocks import section
from tests.helpers import ROOT

OPERATIONS_MD = ROOT / "docs" / "operations.md"
HTTP_API_MD = ROOT / "docs" / "http-api.md"


def table_row(text: str, starts: str) -> str:
    rows = [line for line in text.splitlines() if line.startswith(starts)]
    assert len(rows) == 1, f"expected one table row starting {starts!r}, found {len(rows)}"
    return rows[0]


def documented_commands() -> list[tuple[str, click.Command]]:
    """Every command by its full name; a group's subcommands each count as one."""
    named: list[tuple[str, click.Command]] = []
    for command in COMMANDS:
        if isinstance(command, click.Group):
            named += [(f"{command.name} {n}", sub) for n, sub in command.commands.items()]
        else:
            named.append((str(command.name), command))
    return named


COMMAND_NAMES = [name for name, _ in documented_commands()]


@pytest.mark.parametrize(("name", "command"), documented_commands(), ids=COMMAND_NAMES)
def test_every_command_and_option_is_in_the_commands_table(name, command):
    commands = section(OPERATIONS_MD, "## Commands")
    row = table_row(commands, f"| `flask --app wsgi {name}")
    for param in command.params:
        if isinstance(param, click.Option):
            for opt in param.opts:
                if opt.startswith("--"):
                    assert re.search(rf"{re.escape(opt)}\b", row), f"{opt} is not documented"


@pytest.mark.parametrize("name", list(OPERATIONS))
def test_every_operation_is_in_the_api_document_with_its_params(name):
    row = table_row(HTTP_API_MD.read_text(), f"| `{name}`")
    needed = dict(required_params())[name]
    for param in OPERATIONS[name].required:
        if param not in OPERATIONS[name].defaults:
            assert f"`{param}`" in row and param in needed


def flask_help(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECEIVER_")}
    env["COLUMNS"] = "80"
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args, "--help"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and not done.stderr, done.stderr
    return done.stdout


@pytest.mark.slow
def test_the_command_list_fits_without_cutting_a_description():
    listing = flask_help().split("Commands:", 1)[1]
    for command in COMMANDS:
        line = next(x for x in listing.splitlines() if x.split()[:1] == [command.name])
        assert not line.endswith("...") and command.get_short_help_str(limit=200) in line


@pytest.mark.slow
def test_submit_help_lists_every_operation_with_its_params():
    text = flask_help("submit")
    assert "Operations" in text
    flat = " ".join(text.split())
    for name, needed in required_params():
        assert f"{name} {needed}" in flat
