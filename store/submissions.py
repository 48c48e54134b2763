"""What jobledger itself does to jobs: submissions, their answers, deadlines, notes.

Written through the same row helpers as provider notices (store/notices.py), so the
counters, the alert outbox and the timeline stay in step whoever changes a job.
"""

import json
from collections.abc import Mapping
from typing import Any

from . import states
from .errors import JobNotFound
from .ids import utcnow
from .notices import (
    duration_of,
    fetch_job,
    insert_job,
    insert_local_event,
    lock_keys,
    new_job,
    state_changed,
    update_job,
)
from .records import JOB_COLUMNS, job_from_row, public_job
from .session import Part


class Submissions(Part):
    """jobledger's own changes to jobs (the ledger's `submissions` part)."""

    def _job_record(self, job_id: str) -> dict:
        """Return a job record just written; JobNotFound if a merge or a delete took it."""
        row = self.conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        found = row.fetchone()
        if found is None:
            raise JobNotFound(job_id)
        return public_job(job_from_row(found))

    def begin(
        self,
        *,
        provider: str,
        service: str,
        kind: str,
        operation: str,
        params: Mapping[str, Any],
        media_id: str | None = None,
        origin: str = "submitted",
        metadata: str | None = None,
    ) -> dict:
        """Record a job as `submitting` before its provider API is called.

        A crash between this and `finish` leaves a visible `submitting` job,
        never a lost one.

        :param origin: `external` when the call acts on a job made elsewhere (a Live Stop of
          a stream the ledger did not know)
        :param metadata: the application's own JSON object, as text
        """
        now = utcnow()
        body = json.dumps(dict(params), ensure_ascii=False, sort_keys=True)
        job = new_job(
            provider=provider,
            service=service,
            kind=kind,
            state=states.SUBMITTING,
            origin=origin,
            now=now,
            media_id=media_id,
            operation=operation,
            params=body,
            metadata=metadata,
        )

        def write() -> None:
            insert_job(self.session, job)
            state_changed(self.session, job, None, states.SUBMITTING)
            insert_local_event(self.session, job, f"{operation}:request", body, now)

        self.write(write)
        return self._job_record(job["id"])

    def finish(
        self,
        job_id: str,
        *,
        state: str,
        provider_job_id: str | None = None,
        error_code: str | None = None,
        error_message: str | None = None,
        response: Mapping[str, Any] | None = None,
        operation: str | None = None,
    ) -> dict:
        """Record the provider's answer to a submission.

        If a notice for `provider_job_id` beat this answer and created an external job,
        that job is merged into this one, so the submission and its notices end up on one
        job with the most advanced state of the two.

        :raises JobNotFound: no such job
        """
        args = (job_id, state, provider_job_id, error_code, error_message, response, operation)
        self.write(self._finish, *args)
        return self._job_record(job_id)

    def _finish(
        self, job_id, state, provider_job_id, error_code, error_message, response, operation
    ) -> None:
        now = utcnow()
        job = self._lock_for_answer(job_id, provider_job_id)
        if provider_job_id:
            early = fetch_job(
                self.session,
                "provider_job_id = ? AND provider = ? AND service = ? AND id != ?",
                (provider_job_id, job["provider"], job["service"], job_id),
                lock=True,
            )
            if early is not None:
                self._merge(early, into=job)
            job["provider_job_id"] = provider_job_id
        old = job["state"]
        new = states.advance(job["state"], state)
        if new == state and (error_code or error_message):
            job["error_code"], job["error_message"] = error_code, error_message
        if new in states.FINAL and job["finished_at"] is None:
            job["finished_at"] = now
        if new in states.TOGGLING:
            # An accepted Start/Stop is the stream's newest word: a poll answer from
            # before it cannot toggle it back.
            job["last_event_at"] = max(now, job["last_event_at"] or "")
        job["state"], job["updated_at"] = new, now
        update_job(self.session, job)
        state_changed(self.session, job, old, new)
        body = json.dumps(dict(response or {}), ensure_ascii=False, sort_keys=True)
        event_type = f"{operation or job['operation']}:response"
        insert_local_event(self.session, job, event_type, body, now)

    def _lock_for_answer(self, job_id: str, provider_job_id: str | None) -> dict:
        """Return the submitted job, its row (and its provider job id's key) held.

        :raises JobNotFound: no such job, or merged away meanwhile
        """
        job = fetch_job(self.session, "id = ?", (job_id,))
        if job is None:
            raise JobNotFound(job_id)
        if provider_job_id and self.backend.advisory_locks:
            # A notice for this provider job id arriving now waits for the merge. Advisory
            # locks are always taken before row locks, as recording a notice does.
            lock_keys(self.session, [("job", job["provider"], job["service"], provider_job_id)])
        if self.backend.for_update:
            job = fetch_job(self.session, "id = ?", (job_id,), lock=True)
            if job is None:
                raise JobNotFound(job_id)
        return job

    def _merge(self, early: dict, into: dict) -> None:
        """Fold a job created by an early notice into the submitted job it belongs to."""
        self.conn.execute(
            "UPDATE events SET job_id = ? WHERE job_id = ?", (into["id"], early["id"])
        )
        self.conn.execute("DELETE FROM jobs WHERE id = ?", (early["id"],))
        # Move the early job's alerts unless the submitted job has one for that state.
        self.conn.execute(
            "UPDATE alerts SET job_id = ? WHERE job_id = ?"
            " AND state NOT IN (SELECT state FROM alerts WHERE job_id = ?)",
            (into["id"], early["id"], into["id"]),
        )
        self.conn.execute("DELETE FROM alerts WHERE job_id = ?", (early["id"],))
        state_changed(self.session, early, early["state"], None)
        merged = states.advance(into["state"], early["state"])
        if merged == early["state"]:
            for field in ("outputs", "error_code", "error_message", "finished_at"):
                into[field] = early[field]
            into["duration_seconds"] = duration_of(into)  # its message is written first
        into["preprocess"] = early["preprocess"] or into["preprocess"]
        into["last_event_at"] = (
            max(early["last_event_at"] or "", into["last_event_at"] or "") or None
        )
        state_changed(self.session, into, into["state"], merged)
        into["state"] = merged

    def time_out(self, job_id: str, deadline_s: int) -> bool:
        """Mark a job `timed_out` (and queue its alert) unless it got a word meanwhile."""
        return self.write(self._time_out, job_id, deadline_s)

    def _time_out(self, job_id: str, deadline_s: int) -> bool:
        now = utcnow()
        job = fetch_job(self.session, "id = ?", (job_id,), lock=True)
        if job is None or states.advance(job["state"], states.TIMED_OUT) != states.TIMED_OUT:
            return False
        old = job["state"]
        job.update(
            state=states.TIMED_OUT,
            updated_at=now,
            error_code="DeadlineExceeded",
            error_message=f"no final word within {deadline_s} s of submission",
        )
        update_job(self.session, job)
        state_changed(self.session, job, old, states.TIMED_OUT)
        body = json.dumps({"deadline_s": deadline_s, "submitted_at": job["submitted_at"]})
        insert_local_event(self.session, job, "DeadlineExceeded", body, now, source="poll")
        return True

    def link_resubmission(self, job_id: str, resubmitted_from: str) -> None:
        """Record that `job_id` was submitted again from the failed job `resubmitted_from`."""

        def write() -> None:
            self.conn.execute(
                "UPDATE jobs SET resubmitted_from = ? WHERE id = ?", (resubmitted_from, job_id)
            )
            old = fetch_job(self.session, "id = ?", (resubmitted_from,))
            if old is not None:
                body = json.dumps({"resubmitted_as": job_id})
                insert_local_event(self.session, old, "Resubmitted", body, utcnow())

        self.write(write)

    def note(self, job_id: str, event_type: str, body: Mapping[str, Any]) -> dict:
        """Put something jobledger did on a job's timeline without changing its state
        (a request on a known Live stream, a refused Start/Stop).

        :raises JobNotFound: no such job
        """

        def write() -> None:
            job = fetch_job(self.session, "id = ?", (job_id,))
            if job is None:
                raise JobNotFound(job_id)
            text = json.dumps(dict(body), ensure_ascii=False, sort_keys=True)
            insert_local_event(self.session, job, event_type, text, utcnow())

        self.write(write)
        return self._job_record(job_id)
