"""Read Tencent VOD API 3.0 task objects with the task table (`tencent_v3_table`).

The same row reads the event and the DescribeTaskDetail answer, so a task settles the same
way however the news of it arrives.
"""

from ..base import InvalidPayload, earliest, parse_time, text
from .procedure import v3_flow
from .tasks import outputs, path, settle
from .v3_table import SPECS, TaskSpec

BY_EVENT = {event: spec for spec in SPECS for event in spec.events}
BY_KEY = {spec.key: spec for spec in SPECS if spec.key}
BY_DETAIL_TYPE = {t: spec for spec in SPECS for t in spec.detail[0]}
KINDS = frozenset(spec.kind for spec in SPECS)
POLLED_KINDS = frozenset(spec.kind for spec in SPECS if spec.detail[0])


def spec_of(event_type: str, doc: dict) -> TaskSpec | None:
    """Return the row of an event: by its type, else by the event object it carries."""
    spec = BY_EVENT.get(event_type)
    if spec is not None:
        return spec
    return next((BY_KEY[k] for k, v in doc.items() if k in BY_KEY and isinstance(v, dict)), None)


def read(spec: TaskSpec, task: object) -> dict:
    """Read one task object with its row: kind, ids, state, error and outputs."""
    if not isinstance(task, dict):
        raise InvalidPayload(f"{spec.key or spec.detail[1]} is missing or not an object")
    if spec.flow:
        return v3_flow(task, spec.kind)
    task_id = text(task.get("TaskId"))
    if task_id is None:
        raise InvalidPayload(f"{spec.key or spec.detail[1]} without a TaskId")
    parts = []
    for where in spec.parts:
        found = path(task, where)
        parts.extend(found if isinstance(found, list) else [found])
    media = next((text(path(task, f)) for f in spec.files if text(path(task, f))), None)
    return {
        "kind": spec.kind,
        "provider_job_id": task_id,
        "media_id": media,
        "outputs": outputs(path(task, o) for o in spec.outputs),
        "occurred_at": parse_time(task.get("FinishTime")),
        "started_at": earliest([task.get("CreateTime"), task.get("BeginProcessTime")]),
        **settle(task, parts),
    }
