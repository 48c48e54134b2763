"""A signed notice whose strings hold a NUL character (JSON `\\u0000`), on both engines.

PostgreSQL text cannot hold NUL, SQLite can: refused by the parsers, such a notice is
quarantined alike by the HTTP door and the pull door on either engine (400 with its
quarantine id at the hook), kept byte for byte, and can be replayed, never a 500 that
drops it.
"""

import json

import pytest

from tests.fakes.tencent import FakeTencentAPI
from tests.helpers import (
    SECRET_ID,
    SECRET_KEY,
    assert_error_shape,
    fixture_json,
    summaries,
    tencent_signed,
    vod_headers,
)

pytestmark = pytest.mark.engines

VOD = "/hooks/aliyun/vod"
TENCENT = "/hooks/tencent/vod"


def tencent_with_nul(field: str) -> dict:
    doc = fixture_json("tencent_vod-v3-ProcedureStateChanged.json")
    task = doc["ProcedureStateChangeEvent"]
    task.update(ErrCode=30010, Message="no video stream")
    task[field] = f"{task[field]}\x00tail"
    return doc


def vod_with_nul() -> dict:
    return dict(fixture_json("aliyun_vod-TranscodeComplete.json"), VideoId="video\x00tail")


CASES = ["TaskId", "FileId", "Message", "VideoId"]


def post(client, case: str):
    if case == "VideoId":
        body = json.dumps(vod_with_nul()).encode()
        return body, client.post(VOD, data=body, headers=vod_headers())
    body = tencent_signed(tencent_with_nul(case))
    return body, client.post(TENCENT, data=body)


def rows(ledger, table: str) -> int:
    return ledger.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


@pytest.mark.parametrize("case", CASES)
def test_a_signed_callback_holding_a_nul_is_quarantined_and_can_be_replayed(client, ledger, case):
    body, response = post(client, case)
    data = assert_error_shape(response, 400)
    assert "NUL character" in data["error"]
    qid = data["quarantine_id"]
    assert rows(ledger, "events") == rows(ledger, "jobs") == 0
    item = client.get(f"/api/quarantine/{qid}").get_json()
    assert item["payload"] == body.decode() and "\\u0000" in item["payload"]
    assert (item["status"], item["verified"], item["source"]) == ("waiting", True, "http")
    replayed = client.post(f"/api/quarantine/{qid}/replay")
    assert replayed.status_code == 200, replayed.get_data(as_text=True)
    assert replayed.get_json()["ok"] is False and replayed.get_json()["status"] == "waiting"
    page = client.get(f"/quarantine/{qid}")
    assert page.status_code == 200 and "NUL character" in page.get_data(as_text=True)
    assert (
        client.post(
            VOD,
            data=json.dumps(fixture_json("aliyun_vod-TranscodeComplete.json")),
            headers=vod_headers(),
        ).status_code
        == 200
    )  # and the door still works


def test_both_doors_quarantine_the_same_notice_for_the_same_reason(make_app, client, ledger):
    reasons = {}
    for case in ("TaskId", "FileId", "Message"):
        reasons[case] = assert_error_shape(post(client, case)[1], 400)["error"]
    with FakeTencentAPI(SECRET_ID, SECRET_KEY, confirm_timeout=5, pull_wait=0.2) as api:
        app = make_app(
            TENCENT_SECRET_ID=SECRET_ID,
            TENCENT_SECRET_KEY=SECRET_KEY,
            TENCENT_VOD_ENDPOINT=api.endpoint,
        )
        for case in reasons:
            api.push_event(tencent_with_nul(case))
        result = app.test_cli_runner().invoke(args=["pull-tencent", "--once"])
        assert result.exit_code == 0, result.output
        assert api.pending_events() == []  # quarantined, so confirmed
    assert summaries(result)["v3"]["quarantined"] == 3
    assert summaries(result)["v3"]["applied"] == 0
    pulled = [r for r in ledger.quarantine.bodies() if r["source"] == "pull"]
    assert sorted(r["reason"] for r in pulled) == sorted(reasons.values())
    assert rows(ledger, "events") == 0
