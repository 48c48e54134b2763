"""The PostgreSQL quick start, run as written, and what a command says when a step is missing.

The commands are read from docs/postgresql.md ("In a few lines"), so the document cannot
drift from what works; the README repeats them word for word. They run against a throwaway
cluster that, like a real server, lets roles other than `postgres` in with a password only:
the server's commands as the `postgres` user, the rest as the service would. The only edits
are the server's address (a Unix socket here) and the password typed at `createuser`.
"""

import os
import subprocess
import sys

import pytest

from tests.doc_blocks import code_blocks, edited
from tests.engines import Cluster, required_bindir
from tests.helpers import ROOT

pytestmark = pytest.mark.slow
PASSWORD = "Quick-start-pw1"
HEADING = "## In a few lines"
ADVICE = "on the database server, as the postgres user, run: "


@pytest.fixture
def cluster():
    """A cluster of this test's own: it asks for passwords, and its roles change."""
    started = Cluster(required_bindir())
    try:
        started.require_passwords()
        yield started
    finally:
        started.stop()


def as_postgres(cluster: Cluster, script: str) -> subprocess.CompletedProcess:
    """Run shell lines as the postgres user on the server, typing the password when asked."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PG", "RECEIVER_"))},
        "PATH": f"{cluster.bindir}:{os.environ['PATH']}",
        "PGHOST": str(cluster.socket),
        "PGUSER": "postgres",
    }
    return subprocess.run(
        [*cluster.as_user, "bash", "-e", "-c", script],
        input=f"{PASSWORD}\n{PASSWORD}\n",
        env=env,
        cwd=cluster.root,
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=True,  # no terminal: createuser reads the password from stdin
    )


def as_service(cluster: Cluster, script: str) -> subprocess.CompletedProcess:
    """Run shell lines on a jobledger host: the project directory, this Python's venv."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "RECEIVER_"))}
    env["PATH"] = f"{os.path.dirname(sys.executable)}:{env['PATH']}"
    return subprocess.run(
        ["bash", "-e", "-c", script],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def documented() -> tuple[str, str]:
    """The quick start's two blocks: on the server, then on each jobledger host."""
    server, host = code_blocks(ROOT / "docs" / "postgresql.md", HEADING)
    return server, host


def on_this_cluster(cluster: Cluster, host_block: str, password: str = PASSWORD) -> str:
    return edited(
        host_block,
        {
            "?sslmode=require'": f"?sslmode=require&host={cluster.socket}'",
            "PGPASSWORD=...": f"PGPASSWORD={password}",
        },
    )


def test_the_quick_start_works_as_written(cluster):
    server, host = documented()
    done = as_postgres(cluster, server)
    assert done.returncode == 0, done.stderr
    result = as_service(cluster, on_this_cluster(cluster, host))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "applied 0001_schema" in result.stdout and "Traceback" not in result.stderr
    again = as_service(cluster, on_this_cluster(cluster, host))
    assert again.returncode == 0 and "up to date" in again.stdout, again.stderr


def test_the_readme_gives_the_same_commands():
    readme = code_blocks(ROOT / "README.md", "## Running it for real")
    assert list(documented()) == readme


def one_line(result: subprocess.CompletedProcess) -> str:
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 1, output
    assert "Traceback" not in output and len(output.splitlines()) == 1, output
    assert output.startswith("Error: cannot use the ledger at RECEIVER_DATABASE="), output
    assert PASSWORD not in output
    return output


def advised(output: str) -> str:
    assert ADVICE in output, output
    return output.split(ADVICE, 1)[1]


def test_each_missing_step_is_one_line_saying_what_to_run_and_that_works(cluster):
    """Start from the old two commands (createdb alone); follow each message's advice."""
    _, host = documented()
    init_db = on_this_cluster(cluster, host)
    assert as_postgres(cluster, "createdb jobledger").returncode == 0

    # A server that asks for passwords does not say whether the role exists
    no_role = one_line(as_service(cluster, init_db))
    assert 'refused the password of role "jobledger", or has no such role' in no_role
    assert advised(no_role) == "createuser --pwprompt jobledger"
    assert as_postgres(cluster, advised(no_role)).returncode == 0

    # PostgreSQL 15: the database belongs to postgres, and so does its public schema
    no_privilege = one_line(as_service(cluster, init_db))
    assert "may not create tables" in no_privilege and "GRANT CREATE" in no_privilege
    done = as_postgres(cluster, advised(no_privilege))
    assert done.returncode == 0, done.stderr

    assert as_service(cluster, init_db).returncode == 0


def test_a_missing_database_and_a_wrong_password_are_one_line_each(cluster):
    server, host = documented()
    assert as_postgres(cluster, server.splitlines()[0]).returncode == 0  # the role only
    no_database = one_line(as_service(cluster, on_this_cluster(cluster, host)))
    assert 'database "jobledger" does not exist' in no_database
    assert advised(no_database) == "createdb --owner=jobledger jobledger"

    wrong = one_line(as_service(cluster, on_this_cluster(cluster, host, password="nope")))
    assert "refused the password" in wrong and "PGPASSWORD" in wrong and "nope" not in wrong

    assert as_postgres(cluster, advised(no_database)).returncode == 0
    assert as_service(cluster, on_this_cluster(cluster, host)).returncode == 0


def test_a_command_before_init_db_says_to_run_it(cluster):
    server, host = documented()
    assert as_postgres(cluster, server).returncode == 0
    reconcile = on_this_cluster(cluster, host).replace("init-db", "reconcile --once")
    output = one_line(as_service(cluster, reconcile))
    assert output.endswith("run flask --app wsgi init-db"), output


def test_a_server_that_trusts_its_clients_names_the_missing_role(pg_cluster):
    """Without passwords (trust), the server says outright that the role does not exist."""
    _, host = documented()
    script = on_this_cluster(pg_cluster, host).replace("jobledger?", "postgres?")
    output = one_line(as_service(pg_cluster, script))
    assert 'role "jobledger" does not exist' in output
    assert advised(output) == "createuser --pwprompt jobledger"
