"""Tell whether a connection still writes to the file at the ledger's path.

A file deleted or replaced (restored from a backup, moved aside) under a running service
stays open in every connection made before: SQLite goes on committing to the old inode
and nothing fails, so notices would be acknowledged into a file nobody will read again.
Each connection remembers the device and inode it opened; one `os.stat` before and after a
write tells whether the path still names that file.

Once that happened, the path is opened no more until an operator has cleaned up: SQLite's
WAL side files (`-wal`, `-shm`) are found by name, so a connection to the new file would
take the old file's write-ahead log (holding its latest commits) for its own and apply
the old file's pages to the new one. The process remembers it, and a marker file
`<ledger>-replaced` tells every other process, restarted ones included, until removed.
"""

import contextlib
import os
import sqlite3

from .errors import LedgerUnavailable

_gone: dict[tuple[int, str], LedgerUnavailable] = {}


def file_identity(path: str) -> tuple[int, int] | None:
    """Return (device, inode) of the file at `path`, or None if there is none."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def marker(path: str) -> str:
    """Return the path of the file that says the ledger at `path` was deleted or replaced."""
    return f"{path}-replaced"


def refuse_if_gone(path: str) -> None:
    """Raise LedgerUnavailable if the file at `path` was seen deleted or replaced."""
    gone = _gone.get((os.getpid(), os.path.abspath(path)))
    if gone is not None:
        raise LedgerUnavailable(str(gone), gone.reason)
    try:
        with open(marker(path), encoding="utf-8") as f:
            seen = f.read(500).strip()
    except FileNotFoundError:
        return
    except OSError:
        seen = ""
    raise LedgerUnavailable(
        f"{marker(path)} exists: {seen or 'the ledger file was deleted or replaced'}; "
        "stop every process using the ledger, move the old -wal and -shm files aside, "
        "then remove the marker",
        "replaced",
    )


class LedgerConnection(sqlite3.Connection):
    """An sqlite3 connection that knows which file it opened (see `check_identity`)."""

    ledger_path: str = ""
    identity: tuple[int, int] | None = None

    def pipeline(self) -> contextlib.AbstractContextManager:
        """Nothing to batch: SQLite runs in this process (PostgreSQL's connection batches)."""
        return contextlib.nullcontext()

    def remember_file(self, path: str) -> None:
        """Record the file at `path` as the one this connection writes to."""
        self.ledger_path, self.identity = path, file_identity(path)

    def check_identity(self) -> None:
        """Raise LedgerUnavailable unless the path still names the file this connection opened.

        A mismatch is remembered for the whole process (see the module's docstring).
        """
        now = file_identity(self.ledger_path)
        if now == self.identity:
            return
        what = "deleted" if now is None else "replaced"
        gone = LedgerUnavailable(
            f"the ledger file {self.ledger_path} was {what} under the running service: "
            f"notices are refused until {marker(self.ledger_path)} is removed "
            "(see docs/faults.md)",
            what,
        )
        _gone.setdefault((os.getpid(), os.path.abspath(self.ledger_path)), gone)
        try:  # best effort: the directory may be read-only; this process remembers anyway
            with open(marker(self.ledger_path), "x", encoding="utf-8") as f:
                f.write(f"the ledger file was {what} under a running service\n")
        except OSError:
            pass
        raise gone
