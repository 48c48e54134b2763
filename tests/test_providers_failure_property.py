"""Property: a failure signalled anywhere a provider may signal it never ends in `succeeded`.

For every provider and event shape, hypothesis picks an event (Tencent API 3.0 task events
built from the SDK's field lists, Tencent v2 and Alibaba samples), a place the provider may
report a failure in, a failure value, and unrelated noise (unknown fields, other status
words); the parsed notice must not say `succeeded`, and neither may the job in a ledger.
"""

import dataclasses
import json
from itertools import count

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver.providers.aliyun import mns as queue
from receiver.providers.tencent import v3_tasks as tencent_v3_tasks
from receiver.providers.tencent import vod as tencent_vod
from receiver.providers.tencent.tasks import DONE
from receiver.providers.tencent.v3_table import SPECS
from tests import tencent_sdk
from tests.helpers import fixture_json

pytestmark = pytest.mark.slow
EXAMPLES = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
EVENT_CLASSES = tencent_sdk.event_classes()
V3_SPECS = [s for s in SPECS if s.events]
_serial = count()

codes = st.one_of(
    st.integers(min_value=-(10**9), max_value=10**9).filter(bool),
    st.integers(min_value=1, max_value=10**6).map(str),
    # A code is any text but a word that means success ("SUCCEED" is a status, not a code).
    st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghij.-_", min_size=1, max_size=16).filter(
        lambda s: s.strip(" ").upper() not in DONE | {"", "OK"}
    ),
)
fail_words = st.sampled_from(["FAIL", "Fail", "fail", "FAILED", "ABORTED", "ERROR", "failed"])
noise = st.dictionaries(
    st.sampled_from(["Future", "Extra", "Surprise", "NewField"]),
    st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2)),
    max_size=2,
)


def _elements(found) -> list:
    return [e for e in (found if isinstance(found, list) else [found]) if isinstance(e, dict)]


@st.composite
def tencent_v3(draw) -> tuple[str, str]:
    """A 3.0 task event with a failure in its status, its codes or a nested element."""
    spec = draw(st.sampled_from(V3_SPECS))
    task = tencent_sdk.sample(EVENT_CLASSES[spec.key])
    task["TaskId"] = f"prop-{next(_serial)}"
    fields = tencent_sdk.fields(EVENT_CLASSES[spec.key])
    places = [p for p in ("Status", "ErrCode", "ErrCodeExt") if p in fields]
    if spec.flow:
        places.append("subtask")
    elif spec.parts and _elements(tencent_v3_tasks.path(task, spec.parts[0])):
        places.append("nested")
    place = draw(st.sampled_from(places))
    if "Status" in task and place != "Status":
        task["Status"] = draw(st.sampled_from(["FINISH", "SUCCESS", "PROCESSING", "finish"]))
    if place == "Status":
        task["Status"] = draw(fail_words)
    elif place in ("ErrCode", "ErrCodeExt"):
        task[place] = draw(codes)
    else:
        if place == "subtask":
            item = task["MediaProcessResultSet"][0]
            target = next(v for v in item.values() if isinstance(v, dict) and "Status" in v)
        else:
            target = _elements(tencent_v3_tasks.path(task, spec.parts[0]))[0]
        how = draw(st.sampled_from(["Status", "ErrCode", "ErrCodeExt"]))
        target[how] = draw(fail_words if how == "Status" else codes)
    task |= draw(noise)
    doc = {"EventType": draw(st.sampled_from(spec.events)), spec.key: task} | draw(noise)
    return "tencent", json.dumps(doc)


V2 = {
    "tencent_vod-v2-PullComplete.json": None,
    "tencent_vod-v2-TranscodeComplete.json": None,
    "tencent_vod-v2-CreateImageSpriteComplete.json": None,
    "tencent_vod-v2-ConcatComplete.json": "fileInfo",
    "tencent_vod-v2-ClipComplete.json": "fileInfo",
    "tencent_vod-v2-CreateSnapshotByTimeOffsetComplete.json": "picInfo",
    "tencent_vod-v2-ProcedureStateChanged.json": "processTaskList",
}


@st.composite
def tencent_v2(draw) -> tuple[str, str]:
    """A v2 event with a failure on the envelope, in `data`, or in a nested element."""
    name = draw(st.sampled_from(sorted(V2)))
    doc = fixture_json(name)
    data = doc["data"]
    data["vodTaskId"] = f"prop-{next(_serial)}"
    procedure = doc["eventType"] == "ProcedureStateChanged"
    if procedure:
        data["status"] = draw(st.sampled_from(["FINISH", "PROCESSING"]))
    places = ["envelope.status", "envelope.errCode", "data.errCode"]
    places += [] if procedure else ["data.status"]
    places += ["nested"] if V2[name] else []
    place = draw(st.sampled_from(places))
    where, key = place.split(".") if "." in place else (place, None)
    if where == "envelope":
        doc[key] = draw(codes)
    elif where == "data":
        data[key] = draw(codes)
    else:
        element = draw(st.sampled_from(_elements(data[V2[name]])))
        how = draw(st.sampled_from(["status", "errCode"]))
        element[how] = draw(fail_words if procedure and how == "status" else codes)
    data |= draw(noise)
    return "tencent", json.dumps(doc)


ALIYUN = {
    "aliyun_vod-TranscodeComplete.json": "StreamInfos",
    "aliyun_vod-SnapshotComplete.json": "SnapshotInfos",
    "aliyun_vod-DynamicImageComplete-object.json": None,
    "aliyun_vod-FileUploadComplete.json": None,
    "aliyun_vod-ImageUploadComplete.json": None,
    "aliyun_vod-AttachedMediaUploadComplete.json": None,
    "aliyun_vod-AIMediaDNAComplete.json": None,
    "aliyun_vod-AIVideoTagComplete.json": None,
    "aliyun_vod-AIMediaAuditComplete.json": None,
    "aliyun_vod-VideoAnalysisComplete.json": None,
    "aliyun_vod-ProduceMediaComplete.json": None,
    "aliyun_mps-IProduction-VideoH2V.json": None,
    "aliyun_mps-Transcode-notice.json": None,
}


@st.composite
def aliyun(draw) -> tuple[str, str]:
    """A VOD event or MPS notice with a failing status, an error code or a failed part."""
    name = draw(st.sampled_from(sorted(ALIYUN)))
    doc = fixture_json(name)
    serial = f"prop{next(_serial)}"
    for key in ("VideoId", "MediaId", "JobId", "jobId", "ImageId", "AttachedMediaId"):
        if key in doc:
            doc[key] = serial
    if name.startswith("aliyun_vod-SnapshotComplete"):
        doc["VideoId"] = doc["JobId"] = serial
    mps = name.startswith("aliyun_mps")
    places = ["State", "Code", "code"] if mps else ["Status", "ErrorCode", "Code"]
    places += ["part"] if ALIYUN[name] else []
    place = draw(st.sampled_from(places))
    if place in ("Status", "State"):
        doc[place] = draw(st.sampled_from(["fail", "Fail", "FAIL", "failed"]))
    elif place == "part":
        part = draw(st.sampled_from(doc[ALIYUN[name]]))
        part["Status"] = draw(st.sampled_from(["fail", "Fail"]))
    else:
        doc[place] = str(draw(codes))
    doc |= draw(noise)
    return "aliyun", json.dumps(doc)


def _parse(provider: str, body: str):
    if provider == "tencent":
        return tencent_vod.parse(body.encode())
    return queue.parse(body)  # routes VOD events and MPS notices alike


any_failure = st.one_of(tencent_v3(), tencent_v2(), aliyun())


@EXAMPLES
@given(any_failure)
def test_a_signalled_failure_is_never_succeeded(case):
    event = _parse(*case)
    assert event.state != "succeeded", case


@EXAMPLES
@given(st.lists(any_failure, min_size=1, max_size=3))
def test_through_the_ledger_a_failed_job_stays_unsucceeded(ledger, cases):
    for case in cases:
        event = _parse(*case)
        result = ledger.notices.record(event, source="http", verified=True)
        if result.job_id is None:
            continue
        assert ledger.jobs.get(result.job_id)["state"] != "succeeded", case
        # the success twin arriving later cannot turn a final failure into a success
        if event.state in ("failed", "partial"):
            healed = dataclasses.replace(
                event, state="succeeded", error_code=None, error_message=None, dedup_key=None
            )
            ledger.notices.record(healed, source="http", verified=True)
            assert ledger.jobs.get(result.job_id)["state"] == event.state
