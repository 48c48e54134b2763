"""`reconcile`: provider status answers settle jobs, paced, through the state machine.

Jobs are made the way production makes them (submissions through the API, notices through
the hooks); the fakes answer the status APIs as the providers document them.
"""

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import pytest

from receiver.background.reconcile import Pacer, next_poll_delay, reconcile_pass
from receiver.providers import status_answers
from store.ids import iso
from tests.helpers import ROOT, fixture_json, tencent_signed, vod_headers
from tests.provider_env import (
    LAUNCHER,
    environment,
    provider_settings,
)

pytestmark = pytest.mark.engines

IPRODUCTION = {
    "FunctionName": "VideoClip",
    "JobParams": "{}",
    "Input": "oss://b/in.mp4",
    "Output": "oss://b/out/{source}.mp4",
}


@pytest.fixture
def app(build):
    return build()


def later(minutes: float = 5) -> datetime:
    return datetime.now(UTC) + timedelta(minutes=minutes)


def submit(client, operation, params) -> dict:
    response = client.post("/api/jobs", json={"operation": operation, "params": params})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def run(app, ledger, now=None, **kwargs) -> dict:
    return reconcile_pass(app.config, ledger, now or later(), **kwargs)


def poll_events(ledger, job_id):
    events = ledger.jobs.get(job_id, with_events=True)["events"]
    return [(e["event_type"], e["state_after"]) for e in events if e["source"] == "poll"]


# -- each status API ----------------------------------------------------------------------


def test_mps_job_is_settled_by_query_iproduction_job(app, client, fakes, ledger):
    job = submit(client, "aliyun.mps.SubmitIProductionJob", IPRODUCTION)
    assert run(app, ledger, later(0.5)) == {"due": 0}  # callbacks get the first minute
    fakes.aliyun.set_iproduction(job["provider_job_id"], "Analysing")
    assert run(app, ledger, later(2))["changed"] == 1
    assert ledger.jobs.get(job["id"])["state"] == "processing"
    # Unchanged answer: nothing recorded, and the next poll is further away.
    assert run(app, ledger, later(10))["unchanged"] == 1
    next_at, count = ledger.polls.counts(job["id"])
    assert count == 2 and next_at > iso(later(10) + timedelta(seconds=100))
    fakes.aliyun.set_iproduction(
        job["provider_job_id"],
        "Success",
        result={
            "Code": "Success",
            "Message": "Successful.",
            "Data": {"result": [{"file": "videoclip/16e6bc5c-origin.mp4"}]},
        },
    )
    assert run(app, ledger, later(60))["changed"] == 1
    settled = ledger.jobs.get(job["id"])
    assert settled["state"] == "succeeded"
    assert settled["outputs"] == [{"file": "videoclip/16e6bc5c-origin.mp4"}]
    assert poll_events(ledger, job["id"]) == [
        ("QueryIProductionJob", "processing"),
        ("QueryIProductionJob", "succeeded"),
    ]
    assert run(app, ledger, later(600)) == {"due": 0}  # a final job is never asked again


def test_a_poll_never_moves_a_final_state_back(app, client, fakes, ledger):
    job = submit(client, "aliyun.mps.SubmitIProductionJob", IPRODUCTION)
    fakes.aliyun.set_iproduction(job["provider_job_id"], "Success")
    run(app, ledger)
    stale = {"RequestId": "R2", "JobId": job["provider_job_id"], "State": "Analysing", "Result": ""}
    answer = status_answers.mps_iproduction(stale, "QueryIProductionJob")
    result = ledger.notices.record(answer, source="poll", verified=True)
    assert (result.state, ledger.jobs.get(job["id"])["state"]) == ("succeeded", "succeeded")


def test_failed_mps_job_gets_the_providers_code(app, client, fakes, ledger):
    job = submit(client, "aliyun.mps.SubmitIProductionJob", IPRODUCTION)
    fakes.aliyun.set_iproduction(
        job["provider_job_id"],
        "Fail",
        result={"Code": "InvalidInput.NotSupported", "Message": "The input is not supported."},
    )
    run(app, ledger)
    failed = ledger.jobs.get(job["id"])
    assert (failed["state"], failed["error_code"]) == ("failed", "InvalidInput.NotSupported")
    assert failed["error_message"] == "The input is not supported."


def test_live_edge_job_follows_get_edge_transcode_job(app, client, fakes, ledger):
    fakes.aliyun.add_edge_job("c1", "e1", status="0")
    job = submit(client, "aliyun.live.StartEdgeTranscodeJob", {"ClusterId": "c1", "JobId": "e1"})
    fakes.aliyun.edge_jobs[("c1", "e1")]["LastStartAt"] = iso(later(0))
    assert run(app, ledger, later(2))["unchanged"] == 1  # still running: recorded, no change
    assert [a for a, _ in fakes.aliyun.calls][-1] == "GetEdgeTranscodeJob"
    assert fakes.aliyun.calls[-1][1]["ClusterId"] == "c1"
    # Stopped elsewhere (the console): the next poll sees it.
    fakes.aliyun.edge_jobs[("c1", "e1")].update(Status="0", LastStopAt="2099-01-01T00:00:00Z")
    assert run(app, ledger, later(30))["changed"] == 1
    assert ledger.jobs.get(job["id"])["state"] == "stopped"
    assert poll_events(ledger, job["id"]) == [
        ("GetEdgeTranscodeJob", "running"),
        ("GetEdgeTranscodeJob", "stopped"),
    ]
    assert run(app, ledger, later(600)) == {"due": 0}  # a stopped stream waits for a Start


def test_an_older_edge_answer_does_not_undo_a_newer_start(app, client, fakes, ledger):
    fakes.aliyun.add_edge_job("c1", "e1", status="1")
    submit(client, "aliyun.live.StopEdgeTranscodeJob", {"ClusterId": "c1", "JobId": "e1"})
    job = submit(client, "aliyun.live.StartEdgeTranscodeJob", {"ClusterId": "c1", "JobId": "e1"})
    # The provider still reports the earlier stop (lag): older than our start, so ignored.
    fakes.aliyun.edge_jobs[("c1", "e1")].update(
        Status="0", LastStopAt="2020-01-01T00:00:00Z", LastStartAt=""
    )
    assert run(app, ledger)["unchanged"] == 1
    assert ledger.jobs.get(job["id"])["state"] == "running"


def test_tencent_task_is_settled_by_describe_task_detail(app, client, fakes, ledger):
    job = submit(
        client,
        "tencent.vod.ProcessMediaByProcedure",
        {"FileId": "5285890784246869930", "ProcedureName": "MyProc"},
    )
    assert run(app, ledger, later(2))["changed"] == 1  # the fake says PROCESSING
    assert ledger.jobs.get(job["id"])["state"] == "processing"
    task = fixture_json("tencent_vod-v3-ProcedureStateChanged.json")["ProcedureStateChangeEvent"]
    task["TaskId"] = job["provider_job_id"]
    fakes.tencent.tasks[job["provider_job_id"]].update(Status="FINISH", ProcedureTask=task)
    run(app, ledger, later(30))
    settled = ledger.jobs.get(job["id"])
    assert settled["state"] == "succeeded"
    assert "https://1256768367.vod2.myqcloud.com/xxx/xxx/v.f20.mp4" in [
        o.get("url") for o in settled["outputs"]
    ]


def test_aborted_tencent_task_fails(app, client, fakes, ledger):
    job = submit(
        client, "tencent.vod.ProcessMediaByProcedure", {"FileId": "1", "ProcedureName": "P"}
    )
    fakes.tencent.tasks[job["provider_job_id"]]["Status"] = "ABORTED"
    run(app, ledger)
    failed = ledger.jobs.get(job["id"])
    assert (failed["state"], failed["error_code"]) == ("failed", "ABORTED")


def test_v2_task_is_settled_by_get_task_info(app, client, fakes, ledger):
    job = submit(
        client,
        "tencent.vod.RunProcedure",
        {"inputType": "SingleFile", "file.id": "14508071098244959037", "procedure": "P"},
    )
    data = fixture_json("tencent_vod-v2-ProcedureStateChanged.json")["data"]
    data["processTaskList"][0].update(status="SUCCESS", output={"url": "http://x/f10.mp4"})
    data.update(vodTaskId=job["provider_job_id"], status="FINISH")
    fakes.v2.tasks[job["provider_job_id"]].update(status="FINISHED", data=data)  # table spelling
    assert run(app, ledger)["changed"] == 1
    settled = ledger.jobs.get(job["id"])
    assert settled["state"] == "succeeded"
    assert {"http://x/f10.mp4", "http://125676836723.vod2.myqcloud.com/xxx/xxx/f20.mp4"} <= {
        o.get("url") for o in settled["outputs"]
    }
    assert poll_events(ledger, job["id"]) == [("GetTaskInfo", "succeeded")]


def test_vod_transcode_is_settled_by_its_newest_task(app, client, fakes, ledger):
    notice = fixture_json("aliyun_vod-StreamTranscodeComplete.json") | {"VideoId": "vid1"}
    hook = client.post("/hooks/aliyun/vod", data=json.dumps(notice), headers=vod_headers())
    job_id = hook.get_json()["job_id"]
    fakes.aliyun.transcode_tasks["old"] = {
        "VideoId": "vid1",
        "TaskStatus": "CompleteAllSucc",
        "CreationTime": "2020-01-01T00:00:00Z",
    }
    fakes.aliyun.transcode_tasks["new"] = {
        "VideoId": "vid1",
        "TaskStatus": "CompletePartialSucc",
        "CreationTime": "2026-01-01T00:00:00Z",
        "CompleteTime": "2026-01-01T00:10:00Z",
        "TranscodeJobInfoList": [
            {
                "TranscodeJobId": "j1",
                "TranscodeJobStatus": "TranscodeSuccess",
                "Definition": "LD",
                "OutputFile": {"OutputFileUrl": "http://out/ld.mp4", "Format": "mp4"},
            },
            {
                "TranscodeJobId": "j2",
                "TranscodeJobStatus": "TranscodeFail",
                "Definition": "HD",
                "ErrorCode": "InvalidParameter.Width",
                "ErrorMessage": "bad width",
            },
        ],
    }
    assert run(app, ledger)["changed"] == 1
    settled = ledger.jobs.get(job_id)
    assert (settled["state"], settled["error_code"]) == ("partial", "InvalidParameter.Width")
    assert [o.get("url") for o in settled["outputs"]] == ["http://out/ld.mp4", None]
    asked = [a for a, _ in fakes.aliyun.calls]
    assert asked == ["ListTranscodeTask", "GetTranscodeTask"]
    assert fakes.aliyun.calls[-1][1]["TranscodeTaskId"] == "new"


def test_vod_preprocess_is_settled_by_get_video_info(app, client, fakes, ledger):
    job = submit(client, "aliyun.vod.SubmitPreprocessJobs", {"VideoId": "vid1"})
    assert run(app, ledger)["unchanged"] == 1  # no PreprocessStatus yet: nothing to say
    fakes.aliyun.videos["vid1"]["PreprocessStatus"] = "PreprocessSucceed"
    assert run(app, ledger, later(30))["changed"] == 1
    settled = ledger.jobs.get(job["id"])
    assert (settled["state"], settled["preprocess"]) == ("succeeded", True)


def test_a_job_without_a_status_api_is_not_asked(app, client, fakes, ledger):
    job = submit(
        client,
        "aliyun.vod.SubmitDynamicImageJob",
        {"VideoId": "vid1", "DynamicImageTemplateId": "tpl1"},
    )
    now = later()
    assert run(app, ledger, now) == {"due": 1, "no_status_api": 1}
    assert [a for a, _ in fakes.aliyun.calls] == ["SubmitDynamicImageJob"]
    assert ledger.polls.counts(job["id"])[0] == iso(now + timedelta(hours=1))


# -- pacing -----------------------------------------------------------------------------------


def test_polls_are_capped_per_pass_and_spread_out(app, client, fakes, ledger):
    jobs = [submit(client, "aliyun.mps.SubmitIProductionJob", IPRODUCTION) for _ in range(3)]
    now = later()
    assert run(app, ledger, now, limit=2) == {"due": 2, "changed": 2}
    assert run(app, ledger, now, limit=2) == {"due": 1, "changed": 1}  # the one left over
    assert run(app, ledger, now, limit=2) == {"due": 0}
    assert {ledger.polls.counts(j["id"])[1] for j in jobs} == {1}
    assert [next_poll_delay("iproduction", n) for n in range(8)] == [
        60,
        120,
        240,
        480,
        960,
        1920,
        3600,
        3600,
    ]
    assert next_poll_delay("edge_transcode", 10) == 900


def test_a_throttled_api_is_left_alone_for_the_rest_of_the_pass(app, client, fakes, ledger):
    jobs = [submit(client, "aliyun.mps.SubmitIProductionJob", IPRODUCTION) for _ in range(2)]
    fakes.aliyun.fail_next("QueryIProductionJob", "Throttling.User", "flow control", n=5)
    now = later()
    assert run(app, ledger, now) == {"due": 2, "deferred": 1, "throttled": 1}
    assert len([a for a, _ in fakes.aliyun.calls if a == "QueryIProductionJob"]) == 1
    for job in jobs:  # asked again soon, and the backoff did not grow
        assert ledger.polls.counts(job["id"]) == (iso(now + timedelta(seconds=30)), 0)


def test_a_failed_poll_is_asked_again_later(app, client, fakes, ledger):
    job = submit(client, "aliyun.mps.SubmitIProductionJob", IPRODUCTION)
    del fakes.aliyun.iproduction_jobs[job["provider_job_id"]]  # the provider forgot it
    now = later()
    assert run(app, ledger, now) == {"due": 1, "failed": 1}
    assert ledger.polls.counts(job["id"]) == (iso(now + timedelta(seconds=60)), 1)
    assert ledger.jobs.get(job["id"])["state"] == "submitted"


def test_a_provider_without_credentials_is_skipped(build, fakes, ledger):
    doc = fixture_json("tencent_vod-v3-ProcedureStateChanged.json")
    doc["ProcedureStateChangeEvent"]["Status"] = "PROCESSING"
    app = build(TENCENT_SECRET_ID=None, TENCENT_SECRET_KEY=None)
    app.test_client().post(
        "/hooks/tencent/vod", data=tencent_signed(doc), headers={"Content-Type": "application/json"}
    )
    assert run(app, ledger) == {"due": 1, "not_configured": 1}
    assert fakes.tencent.requests == []


def test_pacer_spaces_calls_of_one_api_family():
    clock, waits = [100.0], []

    def sleep(seconds):
        waits.append(round(seconds, 3))
        clock[0] += seconds

    pacer = Pacer({"a": 4.0, "b": 1.0}, clock=lambda: clock[0], sleep=sleep)
    for family in ("a", "a", "b", "a", "b"):
        pacer.wait(family)
    assert waits == [0.25, 0.25, 0.75]  # a: 4/s; b waits out its own 1 s, not a's


# -- the command ----------------------------------------------------------------------------


def test_cli_reconcile_once_prints_what_it_did(runner, client, fakes, ledger):
    job = submit(client, "aliyun.mps.SubmitIProductionJob", IPRODUCTION)
    ledger.polls.schedule(job["id"], "2000-01-01T00:00:00.000Z", counted=False)
    fakes.aliyun.set_iproduction(job["provider_job_id"], "Success")
    result = runner.invoke(args=["reconcile", "--once"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "due": 1,
        "changed": 1,
        "polled": 1,
        "timed_out": 0,
        "alerts_sent": 0,
        "alerts_waiting": 0,
        "sinks": 0,
    }
    assert ledger.jobs.get(job["id"])["state"] == "succeeded"


def test_reconcile_loop_stops_cleanly_on_sigterm(settings, fakes):
    env = environment(os.environ, {"DATABASE": settings["DATABASE"], **provider_settings(fakes)})
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, "reconcile"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True)
    reader.start()
    try:
        while "reconcile.pass" not in lines.get(timeout=20):
            pass
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        reader.join(5)
        proc.stdout.close()
        proc.stderr.close()


def test_every_status_api_is_asked_through_a_known_client_and_reads_its_own_name():
    from receiver.background.status_apis import STATUS_APIS
    from submitter.operations import CLIENTS

    assert len({api.name for api in STATUS_APIS}) == len(STATUS_APIS)
    for api in STATUS_APIS:
        assert api.client in CLIENTS, api.name
        assert CLIENTS[api.client].poll_qps > 0
