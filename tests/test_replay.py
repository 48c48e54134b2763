"""Bulk replay (API, pages, CLI) through the one replay module; the CLI's progress and totals."""

import ast
import json
import os
import pty
import re
import subprocess
import sys

import pytest

from tests.helpers import (
    ROOT,
    assert_error_shape,
    drain_terminal,
    fixture_json,
    tencent_signed,
    vod_headers,
)

pytestmark = pytest.mark.engines


def keep(ledger, body: bytes, provider: str = "aliyun", source: str = "http") -> int:
    """Quarantine a body an older parser refused, as a hook would have kept it."""
    service = "vod"
    return ledger.quarantine.keep(
        provider=provider,
        service=service,
        source=source,
        body=body,
        reason="older parser",
        verified=True,
        auth="signature",
    )


def vod(video: str, name: str = "aliyun_vod-TranscodeComplete.json", **fields) -> bytes:
    return json.dumps(dict(fixture_json(name), VideoId=video, **fields)).encode()


@pytest.fixture
def waiting(client, ledger) -> dict:
    """Two aliyun bodies and one tencent body that parse today, and one that never will."""
    made = {
        "a": keep(ledger, vod("video-a")),
        "b": keep(ledger, vod("video-b")),
        "t": keep(
            ledger,
            tencent_signed(fixture_json("tencent_vod-v3-ProcedureStateChanged.json")),
            provider="tencent",
        ),
    }
    response = client.post("/hooks/aliyun/vod", data=b"[1, 2", headers=vod_headers())
    made["bad"] = response.get_json()["quarantine_id"]
    return made


def test_bulk_replay_of_the_quarantine_counts_each_outcome(client, waiting):
    data = client.post("/api/replay", json={"target": "quarantine"}).get_json()
    assert data["ok"] is True and data["dry_run"] is False
    counts = {k: data[k] for k in ("matched", "replayed", "changed", "unchanged", "failed")}
    assert counts == {"matched": 4, "replayed": 3, "changed": 3, "unchanged": 0, "failed": 1}
    assert [i["id"] for i in data["items"]] == sorted(waiting.values())  # oldest first
    [failed] = [i for i in data["items"] if not i["ok"]]
    assert failed["id"] == waiting["bad"] and failed["status"] == "waiting"
    assert data["next"] is None
    statuses = {i["id"]: i["status"] for i in client.get("/api/quarantine").get_json()["items"]}
    assert statuses == {waiting["a"]: "replayed", waiting["b"]: "replayed"} | {
        waiting["t"]: "replayed",
        waiting["bad"]: "waiting",
    }
    again = client.post("/api/replay", json={}).get_json()  # only the bad one is left waiting
    assert (again["matched"], again["replayed"], again["failed"]) == (1, 0, 1)


def test_bulk_replay_by_provider_and_dry_run(client, waiting):
    dry = client.post("/api/replay", json={"provider": "tencent", "dry_run": True}).get_json()
    assert dry == {"ok": True, "dry_run": True, "matched": 1}
    assert client.get(f"/api/quarantine/{waiting['t']}").get_json()["status"] == "waiting"
    data = client.post("/api/replay", json={"provider": ["tencent"]}).get_json()
    assert (data["matched"], data["replayed"], data["changed"]) == (1, 1, 1)
    assert data["items"][0]["id"] == waiting["t"] and data["items"][0]["state"] == "succeeded"


def test_a_long_run_continues_where_it_stopped(client, ledger):
    made = [keep(ledger, vod(f"video-{i}")) for i in range(5)]
    body, seen = {"target": "quarantine", "limit": 2}, []
    while body:
        data = client.post("/api/replay", json=body).get_json()
        assert data["replayed"] <= 2
        seen += [i["id"] for i in data["items"]]
        body = data["next"] and {**data["next"], "limit": 2}
    assert seen == made


def test_replaying_stored_events_never_moves_a_final_state_back(client, ledger):
    stream = vod("video-f", "aliyun_vod-StreamTranscodeComplete.json")
    for body in (stream, vod("video-f")):
        assert client.post("/hooks/aliyun/vod", data=body, headers=vod_headers()).status_code == 200
    job_id = ledger.jobs.search()[0][0]["id"]
    assert ledger.jobs.get(job_id)["state"] == "succeeded"
    data = client.post(
        "/api/replay", json={"target": "events", "event_type": "StreamTranscodeComplete"}
    ).get_json()
    counts = {k: data[k] for k in ("matched", "replayed", "changed", "unchanged", "failed")}
    assert counts == {"matched": 1, "replayed": 1, "changed": 0, "unchanged": 1, "failed": 0}
    item = data["items"][0]
    assert (item["state"], item["previous_state"], item["changed"]) == (
        "succeeded",
        "succeeded",
        False,
    )
    everything = client.post("/api/replay", json={"target": "events", "all": True}).get_json()
    assert (everything["matched"], everything["unchanged"]) == (2, 2)  # replays are not replayed
    events = client.get(f"/api/jobs/{job_id}").get_json()["events"]
    assert [e["replay_of"] for e in events] == [None, None, 1, 1, 2]
    assert ledger.jobs.get(job_id)["state"] == "succeeded"


def test_event_filters_select_by_provider_type_source_and_time(client, ledger):
    client.post("/hooks/aliyun/vod", data=vod("video-g"), headers=vod_headers())
    count = lambda doc: client.post("/api/replay", json={**doc, "dry_run": True}).get_json()  # noqa: E731
    base = {"target": "events"}
    assert count({**base, "provider": "aliyun"})["matched"] == 1
    assert count({**base, "provider": "tencent"})["matched"] == 0
    assert count({**base, "event_type": ["TranscodeComplete", "X"]})["matched"] == 1
    assert count({**base, "source": "mns"})["matched"] == 0
    assert count({**base, "since": "2999-01-01T00:00:00Z"})["matched"] == 0
    assert count({**base, "until": "2000-01-01"})["matched"] == 0
    assert count({**base, "ids": [1, 2]})["matched"] == 2


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"target": "jobs"}, "target must be one of quarantine, events"),
        ({"provider": "amazon"}, "provider must be one of aliyun, tencent"),
        ({"source": ["http", "ftp"]}, "source must be one of http, mns, pull"),
        ({"provider": 3}, "provider must be a string or a list of strings"),
        ({"event_type": "TranscodeComplete"}, "event_type"),
        ({"status": "replayed"}, "status"),
        ({"since": "last week"}, "since"),
        ({"target": "events"}, "all"),
        ({"target": "events", "ids": [1], "provider": "aliyun"}, "ids"),
        ({"ids": ["x"]}, "ids"),
        ({"ids": [None, 2]}, "ids"),
        ({"ids": ["", "2"]}, "ids"),
        ({"ids": ["\u00b2"]}, "ids"),
        ({"limit": 0}, "limit"),
        ({"limit": "5"}, "limit"),
        ({"after": -1}, "after"),
        ([1, 2], "JSON object"),
    ],
)
def test_a_bad_replay_filter_is_a_400_naming_it(client, body, named):
    data = assert_error_shape(client.post("/api/replay", json=body), 400)
    assert named in data["error"]


def test_pages_confirm_with_a_count_then_replay(client, waiting):
    html = client.get("/replay?target=quarantine&provider=aliyun").get_data(as_text=True)
    assert re.search(r'<strong id="matched">3</strong> waiting quarantined bodies', html)
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)
    hidden = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', html))
    assert hidden == {"csrf": token, "target": "quarantine", "provider": "aliyun"}
    assert client.get(f"/api/quarantine/{waiting['a']}").get_json()["status"] == "waiting"
    result = client.post("/replay", data=hidden).get_data(as_text=True)
    assert "replayed 2 of 3 quarantined bodies: 2 changed, 0 unchanged, 1 failed" in result
    assert "failed: does not parse" in result
    assert client.get(f"/api/quarantine/{waiting['t']}").get_json()["status"] == "waiting"


def test_pages_say_when_a_replay_changed_nothing(client):
    client.post("/hooks/aliyun/vod", data=vod("video-n"), headers=vod_headers())
    html = client.get("/replay?target=events&all=1").get_data(as_text=True)
    assert '<strong id="matched">1</strong> stored event will' in html
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)
    result = client.post("/replay", data={"csrf": token, "target": "events", "all": "1"})
    text = result.get_data(as_text=True)
    assert "0 changed, 1 unchanged" in text and "Nothing changed" in text
    assert "changed nothing" in text
    chooser = client.get("/replay?target=events")  # the link from the quarantine page
    assert chooser.status_code == 200 and 'id="confirm"' not in chooser.get_data(as_text=True)
    bad = client.get("/replay?target=events&provider=amazon")
    assert bad.status_code == 400 and "provider must be one of" in bad.get_data(as_text=True)


def test_cli_replays_the_quarantine_with_progress_and_totals(runner, waiting):
    result = runner.invoke(args=["replay", "--quarantined"])
    assert result.exit_code == 1  # one body still does not parse
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["quarantine_id"] for line in lines] == [waiting["a"], waiting["b"], waiting["t"]]
    assert all(line["changed"] is True and line["status"] == "replayed" for line in lines)
    assert "Replaying 4 quarantined bodies" in result.stderr
    assert f"quarantine {waiting['bad']}: still unparseable" in result.stderr
    assert "replayed 3 of 4 quarantined bodies: 3 changed, 0 unchanged, 1 failed" in result.stderr
    again = runner.invoke(args=["replay", "--quarantined", str(waiting["a"])])
    assert again.exit_code == 0
    assert json.loads(again.stdout)["changed"] is False
    assert "0 changed, 1 unchanged, 0 failed" in again.stderr


def test_cli_filters_events_and_dry_run(runner, client):
    for video in ("video-x", "video-y"):
        client.post("/hooks/aliyun/vod", data=vod(video), headers=vod_headers())
    dry = runner.invoke(args=["replay", "--provider", "aliyun", "--dry-run"])
    assert dry.exit_code == 0 and json.loads(dry.stdout)["matched"] == 2
    result = runner.invoke(
        args=["replay", "--event-type", "TranscodeComplete", "--since", "2020-01-01"]
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["replay_of"] for line in lines] == [1, 2]
    assert all(line["changed"] is False for line in lines)
    assert "replayed 2 of 2 stored events: 0 changed, 2 unchanged, 0 failed" in result.stderr
    assert runner.invoke(args=["replay", "--all", "--dry-run"]).stdout.count('"matched": 2') == 1


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["replay"], "--quarantined"),
        (["replay", "--quarantined", "--event-type", "X"], "event-type filters stored events"),
        (["replay", "--since", "soon", "--all"], "since is not an ISO 8601 time"),
        (["replay", "--provider", "amazon"], "provider must be one of"),
        (["replay", "--provider", "aliyun", "5"], "not both"),
        (["replay", "18446744073709551616"], "IDS must be a whole number between 1 and"),
        (["replay", "--quarantined", "0"], "IDS must be a whole number between 1 and"),
    ],
)
def test_cli_usage_errors_name_the_option(runner, args, named):
    result = runner.invoke(args=args)
    assert result.exit_code == 2 and named in result.output


def test_cli_draws_a_progress_bar_on_a_terminal(db_path):
    from store import open_ledger

    with open_ledger(db_path) as ledger:
        for i in range(30):
            keep(ledger, vod(f"video-p{i}"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECEIVER_")}
    env["RECEIVER_DATABASE"] = str(db_path)
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "replay", "--quarantined"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=follower,
    )
    os.close(follower)
    stdout, _ = proc.communicate(timeout=60)
    terminal = drain_terminal(leader)
    assert proc.returncode == 0, terminal
    assert len(stdout.splitlines()) == 30  # stdout stays one JSON line per item
    text = terminal.decode()
    assert "Replaying 30 quarantined bodies" in text and "100%" in text and "[####" in text
    assert "replayed 30 of 30 quarantined bodies: 30 changed" in text


def test_pages_import_the_replay_module_not_the_cli():
    for name in ("pages.py", "quarantine_pages.py", "api.py"):
        tree = ast.parse((ROOT / "receiver" / "ops" / name).read_text())
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                imported.add(node.module)
                imported |= {f"{node.module}.{a.name}" for a in node.names}
        assert not {"cli", "receiver.cli", "None.cli"} & imported, name


def test_replaying_an_event_again_is_a_duplicate_of_the_first_replay(client, ledger):
    from receiver.ops.replay import replay_event

    body = vod("video-again")
    answer = client.post("/hooks/aliyun/vod", data=body, headers=vod_headers()).get_json()
    first = replay_event(ledger, answer["event_id"])
    second = replay_event(ledger, answer["event_id"])
    assert first.ok and second.ok
    events = {e["id"]: e for e in ledger.jobs.events(answer["job_id"])}
    assert events[first.event_id]["duplicate_of"] is None  # the first replay applies
    assert events[first.event_id]["replay_of"] == answer["event_id"]
    assert events[second.event_id]["duplicate_of"] == first.event_id  # the second changes nothing
    assert events[second.event_id]["replay_of"] == answer["event_id"]
    page = client.get(f"/api/jobs/{answer['job_id']}").get_json()
    assert [e["duplicate_of"] is not None for e in page["events"]] == [False, False, True]
