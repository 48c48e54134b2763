"""What a person sees first: real `flask` and gunicorn processes starting, or refusing to.

A malformed setting is the operator's to fix, so every command (`--help` included) and
gunicorn say so in one line naming the variable, never with a traceback, and exit non-zero.
gunicorn's own start-up lines name the address it listens on and open nothing shared with
other instances.
"""

import os
import subprocess
import sys
import time

import pytest

from tests.helpers import ROOT, free_port
from tests.proxy import request

pytestmark = pytest.mark.slow

MALFORMED = [
    pytest.param({"RECEIVER_PROXY_HOPS": "abc"}, "RECEIVER_PROXY_HOPS", "abc", id="proxy-hops"),
    pytest.param(
        {"RECEIVER_DATABASE": "postgresql://jobledger:S3cret-pw@db.internal:abc/jobledger"},
        "RECEIVER_DATABASE",
        "S3cret-pw",
        id="database-url",
    ),
    pytest.param(
        {"RECEIVER_DEADLINES": "default=soon"}, "RECEIVER_DEADLINES", "soon", id="deadlines"
    ),
    pytest.param(
        {"RECEIVER_ALERT_WEBHOOK_URLS": "ftp://hooks.example/T0KEN-in-path"},
        "RECEIVER_ALERT_WEBHOOK_URLS",
        "T0KEN-in-path",
        id="secret-url",
    ),
]
SECRETS = {"S3cret-pw", "T0KEN-in-path"}  # values that must never be shown


def environment(tmp_path, **settings) -> dict:
    """A clean environment: no RECEIVER_* of the caller's, HOME and the ledger in tmp_path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECEIVER_", "GUNICORN_"))}
    env.update(HOME=str(tmp_path / "home"), RECEIVER_DATABASE=str(tmp_path / "ledger.db"))
    env.update(settings)
    return env


def run(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def assert_one_line_naming(result: subprocess.CompletedProcess, variable: str, value: str):
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 2, output  # a usage error: the systemd units do not restart
    assert "Traceback" not in output, output
    assert len(output.splitlines()) == 1, output
    assert output.startswith("Error: ") and variable in output, output
    if value in SECRETS:
        assert value not in output, output
    else:
        assert repr(value) in output or value in output, output


@pytest.mark.parametrize(("settings", "variable", "value"), MALFORMED)
@pytest.mark.parametrize(
    "command", [["--help"], ["init-db"], ["reconcile", "--once"], ["submit", "--help"]]
)
def test_every_command_names_a_malformed_setting_in_one_line(
    tmp_path, settings, variable, value, command
):
    result = run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *command],
        environment(tmp_path, **settings),
    )
    assert_one_line_naming(result, variable, value)
    assert not (tmp_path / "ledger.db").exists()


@pytest.mark.parametrize(("settings", "variable", "value"), MALFORMED)
def test_gunicorn_names_a_malformed_setting_in_one_line_not_one_per_worker(
    tmp_path, settings, variable, value
):
    env = environment(
        tmp_path, HOST="127.0.0.1", PORT=str(free_port()), WEB_CONCURRENCY="3", **settings
    )
    result = run([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"], env)
    assert_one_line_naming(result, variable, value)


def start_gunicorn(tmp_path, bind: str) -> tuple[subprocess.Popen, str]:
    env = environment(tmp_path, GUNICORN_BIND=bind, WEB_CONCURRENCY="2")
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "metrics")
    assert run([sys.executable, "-m", "flask", "--app", "wsgi", "init-db"], env).returncode == 0
    log = tmp_path / "gunicorn.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    target = bind if bind.startswith("unix:") else f"http://{bind}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            if request(target, "GET", "/healthz", timeout=1)[0] == 200:
                break
        except OSError:
            time.sleep(0.05)
    proc.terminate()
    assert proc.wait(timeout=40) == 0
    return proc, log.read_text()


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_gunicorn_says_where_it_listens_and_opens_no_shared_control_socket(tmp_path, kind):
    bind = f"127.0.0.1:{free_port()}" if kind == "tcp" else f"unix:{tmp_path / 'web.sock'}"
    proc, log = start_gunicorn(tmp_path, bind)
    shown = f"http://{bind}" if kind == "tcp" else bind
    assert f"Listening at: {shown} ({proc.pid})" in log, log
    # gunicorn 27 would open ~/.gunicorn/gunicorn.ctl, one path for every instance
    assert "ontrol socket" not in log and "Traceback" not in log, log
    assert not (tmp_path / "home" / ".gunicorn").exists()


@pytest.mark.parametrize("kind", ["missing", "not-sqlite", "empty-sqlite"])
def test_the_ledger_size_benchmark_refuses_a_file_that_is_no_ledger_in_one_line(tmp_path, kind):
    path = tmp_path / "ledger-1000000.db"
    if kind == "not-sqlite":
        path.write_text("not a database, but a page of text that is long enough" * 20)
    elif kind == "empty-sqlite":
        import sqlite3

        sqlite3.connect(path).close()
    before = path.read_bytes() if path.exists() else None
    result = run(
        [sys.executable, "-m", "bench.stages", "--ledger", str(path)], environment(tmp_path)
    )
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 2 and "Traceback" not in output, output
    assert output.splitlines()[-1].endswith(
        f"error: --ledger {path}: "
        + {
            "missing": "no such file",
            "not-sqlite": "not an SQLite file (file is not a database)",
            "empty-sqlite": "not a jobledger ledger",
        }[kind]
    ), output
    assert (path.read_bytes() if path.exists() else None) == before  # nothing created


@pytest.mark.parametrize(
    ("where", "command", "says"),
    [
        ("missing.db", ["reconcile", "--once"], "no ledger file there yet: run flask --app"),
        ("empty.db", ["reconcile", "--once"], "the ledger has no tables yet"),
        ("empty.db", ["replay", "--all"], "the ledger has no tables yet"),
        ("file/sub/ledger.db", ["init-db"], "cannot create the folder"),
    ],
)
def test_a_sqlite_ledger_not_set_up_is_one_line_saying_what_to_run(tmp_path, where, command, says):
    import sqlite3

    sqlite3.connect(tmp_path / "empty.db").close()
    (tmp_path / "file").write_text("a file where a folder should be")
    path = tmp_path / where
    env = environment(tmp_path, RECEIVER_DATABASE=str(path))
    result = run([sys.executable, "-m", "flask", "--app", "wsgi", *command], env)
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 1 and "Traceback" not in output, output
    assert len(output.splitlines()) == 1 and says in output, output
    assert output.startswith(f"Error: cannot use the ledger at RECEIVER_DATABASE={path}: ")
    assert not (tmp_path / "missing.db").exists()
