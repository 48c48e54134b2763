"""gunicorn's worker for jobledger: gthread that lets go of the port as soon as it stops.

A stock gthread worker that shuts down (SIGTERM, recycled after max_requests, or its master
gone) stops accepting but keeps its listening socket open until the requests it holds are
done, up to the graceful timeout. With SO_REUSEPORT (gunicorn.conf.py) every worker has its
own listener and the kernel keeps handing that socket new connections, which then wait
unanswered. This worker closes its listener the moment it stops accepting, so new
connections go to the live workers (a restarted master's among them), and a worker whose
master died shuts down as on SIGTERM, draining what it holds.
"""

from gunicorn.workers.gthread import ThreadWorker


class Worker(ThreadWorker):
    """gthread, closing its listeners when it starts to shut down."""

    def is_parent_alive(self) -> bool:
        if super().is_parent_alive():
            return True
        self.alive = False  # orphaned: drain and exit, as on SIGTERM
        return False

    def set_accept_enabled(self, enabled: bool | None) -> None:
        super().set_accept_enabled(enabled)
        if not enabled and not self.alive:
            # Not only paused (too many connections): this worker takes nothing new. Closing
            # its copy leaves a listener shared with other workers open in their processes.
            for listener in self.sockets:
                listener.close()
