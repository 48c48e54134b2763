"""The job state machine: pure functions, no SQL.

States only move forward. A final state is never undone by an older or duplicate event;
`timed_out` is not final, so a later final event still settles the job. Live edge
transcoding jobs are long-running streams rather than batch jobs: they toggle between
`running` and `stopped`, and there the newest word wins.
"""

SUBMITTING = "submitting"
SUBMITTED = "submitted"
PROCESSING = "processing"
SUCCEEDED = "succeeded"
PARTIAL = "partial"
FAILED = "failed"
SUBMIT_FAILED = "submit_failed"
TIMED_OUT = "timed_out"
RUNNING = "running"
STOPPED = "stopped"

FINAL = frozenset({SUCCEEDED, PARTIAL, FAILED, SUBMIT_FAILED})
TOGGLING = frozenset({RUNNING, STOPPED})
ALL = (SUBMITTING, SUBMITTED, PROCESSING, RUNNING, STOPPED, TIMED_OUT) + tuple(sorted(FINAL))
OPEN = frozenset({SUBMITTING, SUBMITTED, PROCESSING, TIMED_OUT})  # may still get a final word
ALERTING = frozenset({FAILED, PARTIAL, SUBMIT_FAILED, TIMED_OUT})
# What a failure rate counts: every outcome (SETTLED), and the failed ones among them
# (ALERTING).
SETTLED = FINAL | {TIMED_OUT}

_RANK = {SUBMITTING: 0, SUBMITTED: 1, PROCESSING: 2, TIMED_OUT: 3}


def advance(current: str | None, incoming: str | None, *, newer: bool = True) -> str | None:
    """Return the state a job moves to when an event proposing `incoming` is applied.

    :param current: the job's state now, or None for a job being created
    :param incoming: the state the event reports, or None for an event that reports none
    :param newer: whether the event is at least as new as the newest one applied so far;
      only consulted between `running` and `stopped`, where order is all there is
    """
    if incoming is None:
        return current
    if current is None:
        return incoming
    if current in FINAL:
        return current
    if incoming in TOGGLING or current in TOGGLING:
        if current in TOGGLING and incoming in _RANK:
            return current  # a late "submitted" never stops a running stream
        return incoming if newer else current
    if current == TIMED_OUT:
        return incoming if incoming in FINAL else current
    if incoming in FINAL:
        return incoming
    return incoming if _RANK[incoming] > _RANK[current] else current
