"""The ledger engines the tests run on: an SQLite file, or a throwaway PostgreSQL cluster.

Modules marked `pytest.mark.engines` run every test that uses a ledger (the `database`
fixture, or `db_path`/`settings`/`ledger`/`app` built on it) on both engines; tests in them
marked `pytest.mark.sqlite_only` poke at the SQLite file itself and run on SQLite alone.

The PostgreSQL cluster is started once per session with the server's own binaries
(Debian package `postgresql`): `initdb` on a temporary directory, listening on a Unix
socket there only. Each test gets a fresh database copied from a migrated template.
Without the binaries the PostgreSQL tests are skipped, saying how to install them, except
under CI (`CI=true`), where they fail.
"""

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import signal
import sqlite3
import subprocess
import tempfile
from pathlib import Path

import pytest

ENGINES = ("sqlite", "postgresql")
TEMPLATE = "jobledger_template"
INSTALL_HINT = "install the PostgreSQL server (Debian: apt-get install postgresql)"
_counter = itertools.count()


def pytest_configure(config):
    config.addinivalue_line("markers", "engines: run the module's ledger tests on both engines")
    config.addinivalue_line("markers", "sqlite_only: this test reads the SQLite file itself")
    config.addinivalue_line("markers", "postgresql_only: this test needs a shared server")


def pytest_generate_tests(metafunc):
    if "database" not in metafunc.fixturenames:
        return
    both = metafunc.definition.get_closest_marker("engines") is not None
    if metafunc.definition.get_closest_marker("sqlite_only") is not None:
        both = False
    if metafunc.definition.get_closest_marker("postgresql_only") is not None:
        engines = ["postgresql"]
    elif both:
        engines = list(ENGINES)
    else:
        return  # SQLite, and the test keeps its plain name
    metafunc.parametrize("database", engines, indirect=True, ids=engines)


def server_bindir() -> Path | None:
    """Return the directory holding `initdb` and `postgres`, or None."""
    candidates = []
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        candidates.append(out.stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for directory in candidates:
        if directory and (Path(directory) / "initdb").exists():
            return Path(directory)
    return None


class Cluster:
    """A running throwaway PostgreSQL cluster, reached over its Unix socket.

    :param tcp_port: also listen on 127.0.0.1 at this port (TCP settings, such as
      keepalives, only apply there), and acknowledge a commit only once its WAL is
      written, so that a crash of the server (an immediate stop) loses nothing committed
    """

    def __init__(self, bindir: Path, tcp_port: int | None = None):
        self.bindir, self.tcp_port = bindir, tcp_port
        self.root = Path(tempfile.mkdtemp(prefix="jobledger-pg-"))
        self.data, self.socket = self.root / "data", self.root
        self.as_user: list[str] = []
        try:
            self._start()
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise

    def _start(self) -> None:
        if os.geteuid() == 0:  # initdb refuses to run as root
            postgres = pwd.getpwnam("postgres")
            os.chown(self.root, postgres.pw_uid, postgres.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        )
        self._pg_ctl("start")

    def _pg_ctl(self, *action: str) -> None:
        listen, commits = "-c listen_addresses=''", "off"
        if self.tcp_port:
            listen, commits = f"-c listen_addresses='127.0.0.1' -p {self.tcp_port}", "on"
        options = (
            f"{listen} -c unix_socket_directories='{self.socket}'"
            f" -c fsync=off -c synchronous_commit={commits} -c full_page_writes=off"
            " -c max_connections=300 -c shared_buffers=32MB"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "server.log"),
            "-w",
            "-t",
            "60",
            *action,
        )

    def _run(self, program: str, *args: str) -> None:
        done = subprocess.run(
            [*self.as_user, str(self.bindir / program), *args],
            capture_output=True,
            text=True,
            cwd=self.root,
        )
        if done.returncode != 0:
            log = self.root / "server.log"
            detail = log.read_text() if log.exists() else ""
            raise RuntimeError(f"{program} failed: {done.stderr}{done.stdout}{detail}")

    def require_passwords(self) -> None:
        """Let every role but `postgres` in with its password only, as a real server does."""
        (self.data / "pg_hba.conf").write_text(
            "local all postgres trust\nlocal all all scram-sha-256\n"
        )
        self._run("pg_ctl", "-D", str(self.data), "reload")

    def url(self, dbname: str, *, tcp: bool = False) -> str:
        if tcp:
            return f"postgresql://postgres@127.0.0.1:{self.tcp_port}/{dbname}?sslmode=disable"
        port = f"&port={self.tcp_port}" if self.tcp_port else ""
        return f"postgresql://postgres@/{dbname}?host={self.socket}{port}"

    def processes(self) -> list[int]:
        """The server's processes: the postmaster first, then its children."""
        from tests.helpers import children

        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        return [postmaster, *children(postmaster)]

    def pause(self) -> None:
        """Stop every process of the server (SIGSTOP), as a frozen machine would."""
        for pid in self.processes():
            os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        for pid in self.processes():
            os.kill(pid, signal.SIGCONT)

    def restart(self, mode: str) -> None:
        """Restart the server: `fast` ends sessions cleanly, `immediate` as a crash does."""
        self._pg_ctl("-m", mode, "restart")

    def admin(self, *statements: str, dbname: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.url(dbname), autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.resume()  # a paused server would not stop
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def required_bindir() -> Path:
    """Return the server's binaries; without them skip, except under CI, where fail."""
    bindir = server_bindir()
    if bindir is None:
        message = f"PostgreSQL server binaries not found: {INSTALL_HINT}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return bindir


@contextlib.contextmanager
def running_cluster(tcp_port: int | None = None):
    """Start a throwaway cluster with a migrated template database; stop it afterwards."""
    bindir = required_bindir()
    from store import migrate

    cluster = Cluster(bindir, tcp_port)
    try:
        cluster.admin(f"CREATE DATABASE {TEMPLATE}")
        migrate(cluster.url(TEMPLATE))
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def pg_cluster():
    """Start the session's PostgreSQL cluster with a migrated template database."""
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="module")
def own_cluster():
    """A cluster of the module's own, also on TCP, for tests that pause, restart or break it."""
    from tests.helpers import free_port

    with running_cluster(tcp_port=free_port()) as cluster:
        yield cluster


@pytest.fixture
def pg_url(pg_cluster):
    """A fresh, migrated PostgreSQL database for one test; dropped afterwards."""
    name = f"t{os.getpid()}_{next(_counter)}"
    pg_cluster.admin(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    yield pg_cluster.url(name)
    pg_cluster.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def database(request, tmp_path):
    """The ledger of one test: an SQLite file path, or a PostgreSQL URL (both migrated)."""
    if getattr(request, "param", "sqlite") == "postgresql":
        return request.getfixturevalue("pg_url")
    from store import migrate

    path = tmp_path / "ledger.db"
    migrate(path)
    return path


def ledger_text(ledger) -> str:
    """Return everything stored in a ledger as text (to look for what must not be there)."""
    if ledger.db is not None:
        return "\n".join(ledger.conn.iterdump())
    tables = ledger.conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return "\n".join(
        str(row)
        for (table,) in tables.fetchall()
        for row in ledger.conn.execute(f"SELECT * FROM {table}")
    )


@contextlib.contextmanager
def holding_writes(database):
    """Keep every notice from being written until the block ends, as a stuck writer would.

    SQLite: another connection holds the write lock (`BEGIN IMMEDIATE`). PostgreSQL: another
    transaction holds the events table in EXCLUSIVE mode, as a long migration or an
    operator's forgotten transaction can; reads go on, every insert of a notice waits.
    """
    if str(database).startswith("postgresql://"):
        import psycopg

        with psycopg.connect(str(database), autocommit=True) as conn:
            conn.execute("BEGIN")
            conn.execute("LOCK TABLE events IN EXCLUSIVE MODE")
            try:
                yield
            finally:
                conn.execute("ROLLBACK")
        return
    writer = sqlite3.connect(database, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        yield
    finally:
        writer.close()  # rolls the transaction back
