"""`reconcile` asks DescribeTaskDetail about every Tencent task kind, and reads the answer
with the same table row as the event (real SDK calls against the local Tencent fake)."""

from datetime import UTC, datetime, timedelta

from receiver.background.reconcile import reconcile_pass
from tests import tencent_sdk
from tests.helpers import tencent_signed


def _edit_media(task_id: str, status: str) -> dict:
    task = tencent_sdk.sample("EditMediaTask") | {"TaskId": task_id, "Status": status}
    return {"EventType": "EditMediaComplete", "EditMediaCompleteEvent": task}


def test_an_external_edit_media_job_is_settled_by_a_poll(build, fakes, ledger):
    app = build()
    client = app.test_client()
    posted = client.post(
        "/hooks/tencent/vod", data=tencent_signed(_edit_media("em-1", "PROCESSING"))
    )
    assert posted.status_code == 200, posted.get_json()
    job_id = posted.get_json()["job_id"]
    assert ledger.jobs.get(job_id)["kind"] == "edit_media"
    task = tencent_sdk.sample("EditMediaTask") | {
        "TaskId": "em-1",
        "ErrCode": 0,
        "ErrCodeExt": "FailedOperation.InvalidInput",
        "Message": "the input file is damaged",
    }
    fakes.tencent.tasks["em-1"] = {
        "TaskType": "EditMedia",
        "Status": "FINISH",
        "EditMediaTask": task,
    }
    reconcile_pass(app.config, ledger, datetime.now(UTC) + timedelta(hours=2))
    job = ledger.jobs.get(job_id)
    assert (job["state"], job["error_code"]) == ("failed", "FailedOperation.InvalidInput")
    [poll] = [e for e in ledger.jobs.events(job_id) if e["source"] == "poll"]
    assert poll["event_type"] == "DescribeTaskDetail"
