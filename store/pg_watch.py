"""A bound, kept by the client, on every wait for a PostgreSQL server that may never answer.

A server that is paused (its processes stopped, its virtual machine frozen, its storage
hung) still has a kernel that accepts connections and acknowledges every byte sent to it:
neither TCP keepalives nor `tcp_user_timeout` end a wait for its answer, and its own
`statement_timeout` does not run while it is stopped. libpq has no timeout on a query.
So one thread per process watches the connections that wait: when a deadline passes, it
shuts the connection's socket down, which ends libpq's wait at once with the connection
broken; the waiting thread gets an error and the connection is never used again.
"""

import os
import socket
import threading
import time
from collections.abc import Callable

TICK_S = 0.05  # how late past its deadline a wait may end

_guards: dict[int, "Guard"] = {}
_registry = threading.Lock()
_thread_pid: int | None = None


class Guard:
    """One connection's deadline, and the means to cut its socket when it passes.

    The owner disarms the guard before it closes the connection (the descriptor could be
    reused by another socket once closed); the guard's lock makes a cut and a disarm
    exclusive, so a cut never reaches a descriptor the owner already let go.
    """

    __slots__ = ("_lock", "_deadline", "_socket_of", "fired")

    def __init__(self, socket_of: Callable[[], int]):
        self._lock = threading.Lock()
        self._deadline: float | None = None
        self._socket_of = socket_of
        self.fired = False  # the last wait was cut

    def arm(self, deadline: float) -> None:
        """Cut the connection if it is still armed at `deadline` (time.monotonic())."""
        with self._lock:
            self._deadline, self.fired = deadline, False
        with _registry:
            _guards[id(self)] = self
            _start()

    def disarm(self) -> None:
        """The wait is over: nothing is cut from now on."""
        if self._deadline is None:  # never armed, or already cut (and forgotten)
            return
        with self._lock:
            self._deadline = None
        with _registry:
            _guards.pop(id(self), None)

    def _check(self, now: float) -> None:
        with self._lock:
            if self._deadline is None or now < self._deadline:
                return
            self._deadline = None
            try:
                fd = self._socket_of()
            except Exception:  # noqa: BLE001 - already closed: nothing left to cut
                return
            cut = socket.socket(fileno=os.dup(fd))
            try:
                cut.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # not connected any more: the wait ends by itself
            finally:
                cut.close()  # the duplicate only; the owner closes its own
            self.fired = True


def _forget_after_fork() -> None:
    global _registry
    _registry = threading.Lock()  # another thread may have held it at the fork
    _guards.clear()  # the parent's waits are not this process's


os.register_at_fork(after_in_child=_forget_after_fork)


def _start() -> None:
    """Start this process's watcher thread (after a fork, the parent's is not there)."""
    global _thread_pid
    if _thread_pid == os.getpid():
        return
    _thread_pid = os.getpid()
    threading.Thread(target=_watch, name="ledger-deadlines", daemon=True).start()


def _watch() -> None:
    while True:
        time.sleep(TICK_S)
        now = time.monotonic()
        with _registry:
            due = [g for g in _guards.values() if g._deadline is not None and g._deadline <= now]
        for guard in due:
            guard._check(now)
            with _registry:
                if guard._deadline is None:
                    _guards.pop(id(guard), None)
