"""POST /hooks/*: the documented status table, and what each answer left in the ledger."""

import json
import time

import pytest

from tests.helpers import (
    AUTH_KEYS,
    CALLBACK_URL,
    assert_error_shape,
    fixture_bytes,
    fixture_json,
    tencent_signed,
    vod_headers,
)

pytestmark = pytest.mark.engines

VOD = "/hooks/aliyun/vod"
TENCENT = "/hooks/tencent/vod"


def count(ledger, table: str) -> int:
    return ledger.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


ALIYUN_SAMPLES = [
    ("aliyun_vod-TranscodeComplete.json", "transcode", "succeeded"),
    ("aliyun_vod-StreamTranscodeComplete.json", "transcode", "processing"),
    ("aliyun_vod-DynamicImageComplete-object.json", "dynamic_image", "succeeded"),
    ("aliyun_vod-FileUploadComplete-2021.json", "upload", "succeeded"),
    ("aliyun_vod-FileUploadComplete.json", "upload", "succeeded"),
    ("aliyun_vod-FileUploadComplete-real.json", "upload", "succeeded"),
    ("aliyun_vod-SnapshotComplete.json", "snapshot", "succeeded"),
    ("aliyun_vod-ImageUploadComplete.json", "upload", "succeeded"),
]


@pytest.mark.parametrize(("name", "kind", "state"), ALIYUN_SAMPLES)
def test_every_documented_vod_sample_is_recorded(client, ledger, name, kind, state):
    body = fixture_bytes(name)
    response = client.post(VOD, data=body, headers=vod_headers())
    assert response.status_code == 200, response.get_json()
    data = response.get_json()
    assert data["ok"] is True and data["duplicate"] is False and data["state"] == state
    job = client.get(f"/api/jobs/{data['job_id']}").get_json()
    assert (job["provider"], job["service"], job["kind"], job["state"]) == (
        "aliyun",
        "vod",
        kind,
        state,
    )
    assert job["origin"] == "external"
    event = job["events"][0]
    assert event["payload"] == body.decode() and event["source"] == "http"
    assert event["verified"] is True and event["state_after"] == state


TENCENT_SAMPLES = [
    ("tencent_vod-v3-ProcedureStateChanged.json", "procedure", "succeeded"),
    ("tencent_vod-v2-ProcedureStateChanged.json", "procedure", "processing"),
    ("tencent_vod-v2-NewFileUpload.json", "upload", "succeeded"),
    ("tencent_vod-v2-NewFileUpload-real.json", "upload", "succeeded"),
    ("tencent_vod-v2-PullComplete.json", "pull", "succeeded"),
    ("tencent_vod-v2-TranscodeComplete.json", "transcode", "succeeded"),
    ("tencent_vod-v2-ConcatComplete.json", "concat", "succeeded"),
    ("tencent_vod-v2-ClipComplete.json", "clip", "succeeded"),
    ("tencent_vod-v2-CreateImageSpriteComplete.json", "image_sprite", "succeeded"),
    ("tencent_vod-v2-CreateSnapshotByTimeOffsetComplete.json", "snapshot", "succeeded"),
]


@pytest.mark.parametrize(("name", "kind", "state"), TENCENT_SAMPLES)
def test_every_documented_tencent_sample_is_recorded(make_app, ledger, name, kind, state):
    client = make_app(HOOK_TOKEN="hook-secret-1").test_client()  # v2 cannot sign
    response = client.post(f"{TENCENT}?token=hook-secret-1", data=fixture_bytes(name))
    assert response.status_code == 200, response.get_json()
    job = client.get(f"/api/jobs/{response.get_json()['job_id']}").get_json()
    assert (job["provider"], job["kind"], job["state"]) == ("tencent", kind, state)
    assert job["events"][0]["verified"] is True


def test_signed_v3_callback_needs_no_token(make_app):
    client = make_app(HOOK_TOKEN="hook-secret-1").test_client()
    body = tencent_signed(fixture_json("tencent_vod-v3-ProcedureStateChanged.json"))
    response = client.post(TENCENT, data=body)
    assert response.status_code == 200 and response.get_json()["state"] == "succeeded"


def test_unknown_event_type_is_stored_and_acknowledged(client, ledger):
    body = json.dumps({"EventType": "SomeFutureComplete", "VideoId": "v", "Status": "success"})
    response = client.post(VOD, data=body, headers=vod_headers())
    assert response.status_code == 200 and response.get_json()["job_id"] is None
    assert count(ledger, "events") == 1 and count(ledger, "jobs") == 0


def test_file_deleted_is_stored_without_a_job(make_app, ledger):
    client = make_app(ALLOW_UNSIGNED=True, TENCENT_VOD_SIGN_KEY=None).test_client()
    response = client.post(TENCENT, data=fixture_bytes("tencent_vod-v2-FileDeleted.json"))
    assert response.status_code == 200 and response.get_json()["job_id"] is None
    assert ledger.conn.execute("SELECT verified FROM events").fetchone()[0] == 0


# -- redelivery and ordering ------------------------------------------------------------


def test_same_body_five_times_is_one_state_change(client, ledger):
    body = fixture_bytes("aliyun_vod-TranscodeComplete.json")
    answers = [client.post(VOD, data=body, headers=vod_headers()) for _ in range(5)]
    assert [a.status_code for a in answers] == [200] * 5
    assert [a.get_json()["duplicate"] for a in answers] == [False] + [True] * 4
    assert len({a.get_json()["job_id"] for a in answers}) == 1
    assert count(ledger, "jobs") == 1
    assert ledger.jobs.stats()["by_state"] == {"succeeded": 1}


def test_finish_then_an_older_processing(make_app, ledger):
    client = make_app(HOOK_TOKEN="t0k").test_client()
    doc = fixture_json("tencent_vod-v2-ProcedureStateChanged.json")
    finished = json.loads(json.dumps(doc))
    finished["data"].update(status="FINISH")
    for task in finished["data"]["processTaskList"]:
        task["status"] = "SUCCESS"
    first = client.post(f"{TENCENT}?token=t0k", data=json.dumps(finished))
    late = client.post(f"{TENCENT}?token=t0k", data=json.dumps(doc))
    assert first.get_json()["state"] == late.get_json()["state"] == "succeeded"
    assert late.get_json()["duplicate"] is False  # a different notice, stored, but stale
    job = client.get(f"/api/jobs/{first.get_json()['job_id']}").get_json()
    assert job["state"] == "succeeded"
    assert [e["state_after"] for e in job["events"]] == ["succeeded", "succeeded"]


# -- authentication ---------------------------------------------------------------------


def _bad_vod_request(what: str) -> tuple[str, dict]:
    now = int(time.time())
    return {
        "forged": (VOD, {**vod_headers(), "X-VOD-SIGNATURE": "f" * 32}),
        "stale": (VOD, vod_headers(ts=now - 301)),
        "wrong key": (VOD, vod_headers(key="WrongKey123")),
        "wrong url": (VOD, vod_headers(url="http://attacker.example/hook")),
        "missing signature": (VOD, {"X-VOD-TIMESTAMP": str(now)}),
        "unsigned": (VOD, {}),
    }[what]


@pytest.mark.parametrize(
    "what", ["forged", "stale", "wrong key", "wrong url", "missing signature", "unsigned"]
)
def test_bad_vod_signatures_get_401_and_store_nothing(client, ledger, what):
    path, headers = _bad_vod_request(what)
    response = client.post(
        path, data=fixture_bytes("aliyun_vod-TranscodeComplete.json"), headers=headers
    )
    assert_error_shape(response, 401)
    for table in ("events", "jobs", "quarantine"):
        assert count(ledger, table) == 0


@pytest.mark.parametrize("key", AUTH_KEYS)
def test_rotated_keys_are_both_accepted(client, key):
    response = client.post(
        VOD, data=fixture_bytes("aliyun_vod-TranscodeComplete.json"), headers=vod_headers(key=key)
    )
    assert response.status_code == 200


@pytest.mark.parametrize("query", ["", "?token=wrong", "?token=", "?token=hook-secret-1x"])
def test_wrong_or_missing_token_is_401(make_app, ledger, query):
    client = make_app(HOOK_TOKEN="hook-secret-1").test_client()
    response = client.post(TENCENT + query, data=fixture_bytes("tencent_vod-v2-PullComplete.json"))
    assert_error_shape(response, 401)
    assert count(ledger, "events") == 0


def test_token_stands_in_for_a_signature_on_vod_with_auth_off(make_app):
    client = make_app(HOOK_TOKEN="123456").test_client()  # digits stay text
    body = fixture_bytes("aliyun_vod-TranscodeComplete.json")
    assert client.post(f"{VOD}?token=123456", data=body).status_code == 200


def test_a_bad_signature_is_not_rescued_by_the_token(make_app):
    client = make_app(HOOK_TOKEN="123456").test_client()
    body = fixture_bytes("aliyun_vod-TranscodeComplete.json")
    headers = {**vod_headers(), "X-VOD-SIGNATURE": "0" * 32}
    assert_error_shape(client.post(f"{VOD}?token=123456", data=body, headers=headers), 401)


def test_tencent_bad_sign_is_401(client, ledger):
    body = tencent_signed(fixture_json("tencent_vod-v3-ProcedureStateChanged.json"), key="nope")
    assert_error_shape(client.post(TENCENT, data=body), 401)
    assert count(ledger, "events") == 0


@pytest.mark.parametrize(
    ("path", "setting"),
    [(VOD, "RECEIVER_ALIYUN_VOD_AUTH_KEYS"), (TENCENT, "RECEIVER_TENCENT_VOD_SIGN_KEY")],
)
def test_unconfigured_provider_is_503_naming_the_setting(make_app, ledger, path, setting):
    client = make_app(
        ALIYUN_VOD_AUTH_KEYS=[], ALIYUN_VOD_CALLBACK_URL=None, TENCENT_VOD_SIGN_KEY=None
    ).test_client()
    data = assert_error_shape(client.post(path, data=b"{}", headers=vod_headers()), 503)
    assert setting in data["error"]
    assert count(ledger, "events") == 0


def test_allow_unsigned_marks_events_unverified(make_app, ledger):
    client = make_app(
        ALIYUN_VOD_AUTH_KEYS=[], ALIYUN_VOD_CALLBACK_URL=None, ALLOW_UNSIGNED=True
    ).test_client()
    response = client.post(VOD, data=fixture_bytes("aliyun_vod-TranscodeComplete.json"))
    assert response.status_code == 200
    assert ledger.conn.execute("SELECT verified, auth FROM events").fetchone() == (0, "none")


def test_allow_unsigned_does_not_open_a_configured_provider(make_app):
    client = make_app(ALLOW_UNSIGNED=True).test_client()
    assert_error_shape(
        client.post(VOD, data=fixture_bytes("aliyun_vod-TranscodeComplete.json")), 401
    )


# -- bad bodies -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        fixture_bytes("aliyun_vod-DynamicImageComplete-2021-string.txt"),  # invalid as documented
        fixture_bytes("aliyun_vod-TranscodeComplete-real.txt"),  # elided with "..."
        b"not json at all",
        b"[1, 2]",
        b'{"VideoId": "v"}',
        b"\xff\xfe\x00garbage",
        b"[" * 50000,
    ],
)
def test_authenticated_garbage_is_400_and_quarantined(client, ledger, runner, body):
    response = client.post(VOD, data=body, headers=vod_headers())
    data = assert_error_shape(response, 400)
    assert count(ledger, "events") == 0
    row = ledger.conn.execute("SELECT id, body, verified, source FROM quarantine").fetchone()
    assert (row[0], bytes(row[1]), row[2], row[3]) == (data["quarantine_id"], body, 1, "http")


def test_body_over_one_mib_is_413(client, ledger):
    body = b'{"EventType": "TranscodeComplete", "pad": "' + b"x" * (1024 * 1024) + b'"}'
    assert_error_shape(client.post(VOD, data=body, headers=vod_headers()), 413)
    assert count(ledger, "quarantine") == 0


def test_unknown_provider_and_wrong_method(client):
    assert_error_shape(client.post("/hooks/aliyun/mps", data=b"{}"), 404)
    assert_error_shape(client.post("/hooks/foo/bar", data=b"{}"), 404)
    assert_error_shape(client.get(VOD), 405)


def test_ledger_not_initialized_is_503(make_app, tmp_path):
    client = make_app(DATABASE=str(tmp_path / "missing.db")).test_client()
    data = assert_error_shape(client.post(VOD, data=b"{}", headers=vod_headers()), 503)
    assert "init-db" in data["error"]


def test_callback_url_is_the_configured_string(make_app):
    # Behind a proxy the request URL differs; the signed string is the configured one.
    client = make_app().test_client()
    headers = vod_headers(url=CALLBACK_URL)
    response = client.post(
        VOD,
        data=fixture_bytes("aliyun_vod-TranscodeComplete.json"),
        headers=headers,
        base_url="http://10.0.0.7:8000",
    )
    assert response.status_code == 200
