"""Settings: text values, lists, and start-up refusing malformed ones by name."""

import json

import pytest

from receiver import create_app
from receiver.config import DEFAULT_DEADLINES, ConfigError, from_environ
from tests.helpers import fixture_json, vod_headers


def test_values_stay_text():
    config = from_environ({"RECEIVER_OPS_TOKEN": "0123", "RECEIVER_HOOK_TOKEN": '{"a": 1}'})
    assert config == {"OPS_TOKEN": "0123", "HOOK_TOKEN": '{"a": 1}'}


def test_lists_and_flags():
    config = from_environ(
        {
            "RECEIVER_ALIYUN_VOD_AUTH_KEYS": " k1, k2 ,,",
            "RECEIVER_MNS_QUEUES": "vod-events,mps-events",
            "RECEIVER_ALLOW_UNSIGNED": "1",
            "RECEIVER_DEADLINES": "default=600,iproduction=60",
            "RECEIVER_ALIYUN_VOD_ENDPOINT": "127.0.0.1:8080",
        }
    )
    assert config["ALIYUN_VOD_AUTH_KEYS"] == ["k1", "k2"]
    assert config["MNS_QUEUES"] == ["vod-events", "mps-events"]
    assert config["ALLOW_UNSIGNED"] is True
    assert config["DEADLINES"] == {"default": 600, "iproduction": 60}
    assert config["ALIYUN_VOD_ENDPOINT"] == "127.0.0.1:8080"


def test_deadlines_without_default_fall_back_to_the_built_in_default():
    assert from_environ({"RECEIVER_DEADLINES": "snapshot=5"})["DEADLINES"] == {
        "snapshot": 5,
        "default": DEFAULT_DEADLINES["default"],
    }


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RECEIVER_DURABILITY", "fast"),
        ("RECEIVER_ALLOW_UNSIGNED", "maybe"),
        ("RECEIVER_RETENTION_DAYS", "ten"),
        ("RECEIVER_RETENTION_DAYS", "0"),
        ("RECEIVER_DEADLINES", "default:600"),
        ("RECEIVER_DEADLINES", "iproduction=soon"),
        ("RECEIVER_ALIYUN_VOD_CALLBACK_URL", "example.com/hook"),
        ("RECEIVER_ALERT_WEBHOOK_URLS", "https://ok.example/a,ftp://bad"),
        ("RECEIVER_MNS_ENDPOINT", "mns.cn-shanghai.aliyuncs.com"),
        ("RECEIVER_TENCENT_VOD_ENDPOINT", "http://vod.tencentcloudapi.com/"),
    ],
)
def test_malformed_settings_stop_start_up_naming_the_variable(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        create_app()


def test_the_malformed_value_is_shown_to_help(monkeypatch):
    monkeypatch.setenv("RECEIVER_ALLOW_UNSIGNED", "nope")
    with pytest.raises(ConfigError) as info:
        create_app()
    assert "nope" in str(info.value)  # secrets are shown as (hidden) instead


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"ALIYUN_VOD_AUTH_KEYS": ["k"]}, "RECEIVER_ALIYUN_VOD_CALLBACK_URL"),
        (
            {"MNS_ENDPOINT": "http://127.0.0.1:1", "MNS_ACCESS_KEY_ID": "a"},
            "RECEIVER_MNS_ACCESS_KEY_SECRET",
        ),
        ({"ALIYUN_ACCESS_KEY_ID": "a"}, "RECEIVER_ALIYUN_ACCESS_KEY_SECRET"),
        ({"TENCENT_SECRET_KEY": "s"}, "RECEIVER_TENCENT_SECRET_ID"),
    ],
)
def test_incomplete_settings_are_refused(settings, named):
    with pytest.raises(ConfigError, match=named):
        create_app({"TESTING": True, **settings})


def test_the_real_command_line_refuses_a_bad_setting(tmp_path):
    import subprocess
    import sys

    from tests.helpers import ROOT

    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "init-db"],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "RECEIVER_DURABILITY": "fast",
            "RECEIVER_DATABASE": str(tmp_path / "x.db"),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "RECEIVER_DURABILITY" in result.stderr
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize("raw", ["-1", "6", "one", "²"])
def test_a_bad_proxy_hop_count_is_refused(raw):
    with pytest.raises(ConfigError, match="RECEIVER_PROXY_HOPS"):
        from_environ({"RECEIVER_PROXY_HOPS": raw})


def test_forwarded_headers_count_only_behind_a_declared_proxy(make_app):
    forwarded = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
    direct = make_app().test_client()
    # Without PROXY_HOPS a client cannot pose as another by sending the header itself.
    assert direct.get("/api/stats", headers=forwarded).status_code == 200  # loopback peer
    proxied = make_app(PROXY_HOPS="1").test_client()
    # Behind the proxy the forwarded address is the client: not loopback, so no ops surface.
    assert proxied.get("/api/stats", headers=forwarded).status_code == 403
    assert proxied.get("/api/stats", headers={"X-Forwarded-For": "127.0.0.1"}).status_code == 200
    hook = proxied.post(
        "/hooks/aliyun/vod",
        data=json.dumps(fixture_json("aliyun_vod-TranscodeComplete.json")),
        headers=vod_headers(),
    )
    page = proxied.get(
        f"/jobs/{hook.get_json()['job_id']}",
        headers={"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "https"},
    )
    assert page.status_code == 200 and "Secure" in page.headers["Set-Cookie"]
