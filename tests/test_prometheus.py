"""The shipped Prometheus rules and Grafana dashboard: valid, firing when they should on
series this test writes (promtool), and naming only metrics /metrics really exposes."""

import json
import os
import re
import shutil
import subprocess
from datetime import UTC, datetime

import pytest

from receiver.background.health import health_pass
from tests.helpers import ROOT
from tests.test_provider_health import CONFIG, PROCEDURE, TRANSCODE, running_job, steady

RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "jobledger-provider-health.json"
RECORDED = re.compile(r"\b[a-z_]+:[a-z_]+:[a-z0-9_]+\b")
METRIC = re.compile(r"\bjobledger_[a-z_]+\b")


@pytest.fixture
def promtool():
    found = shutil.which("promtool")
    if found is None:
        message = "promtool not found: install Debian's prometheus package (.ci/run does)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def test_the_rules_are_valid(promtool):
    done = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 13 rules found" in done.stdout


def kind(provider: str, service: str, name: str, **extra: str) -> str:
    labels = dict(provider=provider, service=service, kind=name, **extra)
    return "{" + ", ".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


RATIO = "provider_service_kind:jobledger_jobs_failed_per_finished:ratio_rate15m"
UNIT_TESTS = {
    "rule_files": [str(RULES)],
    "evaluation_interval": "1m",
    "tests": [
        {
            # A day of 2 % failures for two kinds, then Alibaba VOD transcodes fail 6 of 16.
            "interval": "1m",
            "input_series": [
                {
                    "series": "jobledger_jobs_finished_total"
                    + kind("aliyun", "vod", "transcode", outcome="succeeded"),
                    "values": "0+10x1500",
                },
                {
                    "series": "jobledger_jobs_finished_total"
                    + kind("aliyun", "vod", "transcode", outcome="failed"),
                    "values": "0+0.2x1440 288+6x60",
                },
                {
                    "series": "jobledger_jobs_finished_total"
                    + kind("tencent", "vod", "procedure", outcome="succeeded"),
                    "values": "0+10x1500",
                },
                {
                    "series": "jobledger_jobs_finished_total"
                    + kind("tencent", "vod", "procedure", outcome="timed_out"),
                    "values": "0+0.2x1500",
                },
            ],
            "promql_expr_test": [
                {
                    "expr": RATIO + '{provider="aliyun"}',
                    "eval_time": "1500m",
                    "exp_samples": [
                        {"labels": RATIO + kind("aliyun", "vod", "transcode"), "value": 0.375}
                    ],
                }
            ],
            "alert_rule_test": [
                {"eval_time": "1440m", "alertname": "JobledgerFailureRateHigh", "exp_alerts": []},
                {
                    "eval_time": "1500m",
                    "alertname": "JobledgerFailureRateHigh",
                    "exp_alerts": [
                        {
                            "exp_labels": {
                                "provider": "aliyun",
                                "service": "vod",
                                "kind": "transcode",
                                "severity": "critical",
                            },
                            "exp_annotations": {
                                "summary": "aliyun vod transcode failing 37.5% in the last 15 min",
                                "description": "Compare the dashboard's Provider health section,"
                                " and the kind's failed jobs on the jobledger job list.",
                            },
                        }
                    ],
                },
            ],
        },
        {
            "interval": "1m",
            "input_series": [
                {
                    "series": "jobledger_jobs_slow" + kind("tencent", "vod", "procedure"),
                    "values": "0x10 2x40",
                },
                {
                    "series": "jobledger_provider_anomaly" + kind("aliyun", "vod", "transcode"),
                    "values": "0x5 1x40",
                },
                {"series": "jobledger_health_generated_timestamp_seconds", "values": "0x50"},
            ],
            "alert_rule_test": [
                {"eval_time": "20m", "alertname": "JobledgerSlowJobs", "exp_alerts": []},
                {
                    "eval_time": "40m",
                    "alertname": "JobledgerSlowJobs",
                    "exp_alerts": [
                        {
                            "exp_labels": {
                                "provider": "tencent",
                                "service": "vod",
                                "kind": "procedure",
                                "severity": "warning",
                            },
                            "exp_annotations": {
                                "summary": "2 tencent vod procedure jobs running past their"
                                " kind's p95 for 15 min",
                                "description": "GET /jobs?slow=true lists them; they time out"
                                " at their deadline.",
                            },
                        }
                    ],
                },
                {
                    "eval_time": "10m",
                    "alertname": "JobledgerProviderAnomaly",
                    "exp_alerts": [
                        {
                            "exp_labels": {
                                "provider": "aliyun",
                                "service": "vod",
                                "kind": "transcode",
                                "severity": "critical",
                            },
                            "exp_annotations": {
                                "summary": "jobledger judges aliyun vod transcode's failure"
                                " rate anomalous",
                                "description": "The dashboard's banner says by how much,"
                                " against which baseline.",
                            },
                        }
                    ],
                },
                {
                    "eval_time": "15m",
                    "alertname": "JobledgerHealthNotComputed",
                    "exp_alerts": [
                        {
                            "exp_labels": {"severity": "warning"},
                            "exp_annotations": {
                                "summary": "jobledger has not worked out provider health for 5 min",
                                "description": "Provider health, alerts and timeouts are"
                                " computed by the reconcile process: is it running?",
                            },
                        }
                    ],
                },
            ],
        },
        {
            # Two web processes expose the same ledger; e2 stops taking deliveries at 10 min
            # while e1 keeps going, and from 10 min one message waits and ages.
            "interval": "1m",
            "input_series": [
                *(
                    {
                        "series": "jobledger_deliveries_total"
                        + f'{{endpoint="{e}", outcome="{o}", instance="{i}"}}',
                        "values": values,
                    }
                    for i in ("web1", "web2")
                    for e, o, values in (
                        ("e1", "delivered", "0+5x40"),
                        ("e1", "failed_attempt", "0+1x40"),
                        ("e2", "delivered", "0+5x10 50x30"),
                        ("e2", "failed_attempt", "0x10 0+1x30"),
                    )
                ),
                *(
                    {
                        "series": f'jobledger_oldest_pending_message_age_seconds{{instance="{i}"}}',
                        "values": "0x10 60+60x30",
                    }
                    for i in ("web1", "web2")
                ),
            ],
            "alert_rule_test": [
                {"eval_time": "20m", "alertname": "JobledgerDeliveriesWaiting", "exp_alerts": []},
                {
                    "eval_time": "40m",
                    "alertname": "JobledgerDeliveriesWaiting",
                    "exp_alerts": [
                        {
                            "exp_labels": {"severity": "critical"},
                            "exp_annotations": {
                                "summary": "A job state change has waited 30m 0s to reach its"
                                " endpoints",
                                "description": "Is a deliver process running? /endpoints shows"
                                " which endpoint is failing or disabled, and why.",
                            },
                        }
                    ],
                },
                {"eval_time": "20m", "alertname": "JobledgerEndpointFailing", "exp_alerts": []},
                {
                    "eval_time": "40m",
                    "alertname": "JobledgerEndpointFailing",
                    "exp_alerts": [
                        {
                            "exp_labels": {"endpoint": "e2", "severity": "warning"},
                            "exp_annotations": {
                                "summary": "Endpoint e2 has accepted no delivery for 15 min",
                                "description": "Its messages wait and are retried;"
                                " /endpoints/e2 shows each attempt's answer. Deliveries given"
                                " up on can be recovered there once it is fixed.",
                            },
                        }
                    ],
                },
            ],
        },
    ],
}


def test_the_rules_fire_on_the_series_they_watch(promtool, tmp_path):
    tests = tmp_path / "rules_test.yml"
    tests.write_text(json.dumps(UNIT_TESTS))  # JSON is YAML
    done = subprocess.run([promtool, "test", "rules", str(tests)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def exposed_names(text: str) -> set[str]:
    """Return every sample name a Prometheus text exposition holds, and every family it
    describes (a counter with no samples yet, such as deliveries before any endpoint)."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            names.add(line.split(" ", 3)[2])
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


@pytest.mark.engines
def test_every_metric_the_rules_and_dashboard_name_is_exposed(client, ledger):
    now = datetime.now(UTC)
    steady(ledger, TRANSCODE, now, hours=2, fail_every=5)
    steady(ledger, PROCEDURE, now, hours=30, per_hour=2)
    running_job(ledger, PROCEDURE, now, took=2 * 3600)
    health_pass(CONFIG, ledger, now)
    text = client.get("/metrics").get_data(as_text=True)
    exposed = exposed_names(text)
    rules = RULES.read_text()
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in dashboard["templating"]["list"]]
    # Metric names, apart from the middle part of recording rules' names.
    named = {m for e in [rules, *exprs] for m in METRIC.findall(RECORDED.sub(" ", e))}
    assert named and named <= exposed, named - exposed
    recorded = set(re.findall(r"record: (\S+)", rules))
    used = {r for e in exprs for r in RECORDED.findall(e)} | set(RECORDED.findall(rules))
    assert used <= recorded, used - recorded
    # The histogram: buckets from seconds to a day, cumulative, +Inf equal to the count.
    buckets = re.findall(
        r'jobledger_job_duration_seconds_bucket\{kind="procedure",le="([^"]+)",'
        r'provider="tencent",service="vod"\} (\S+)',
        text,
    )
    assert [b for b, _ in buckets][0] == "5" and [b for b, _ in buckets][-2:] == ["86400", "+Inf"]
    counts = [float(n) for _, n in buckets]
    assert counts == sorted(counts) and counts[-1] == 60  # 30 h of 2 an hour
    assert 'jobledger_jobs_slow{kind="procedure",provider="tencent",service="vod"} 1.0' in text
    finished = re.findall(r'jobledger_jobs_finished_total\{kind="transcode",outcome="(\w+)"', text)
    assert sorted(finished) == ["failed", "succeeded"]


def test_the_grafana_dashboard_imports_with_a_datasource_input():
    dashboard = json.loads(DASHBOARD.read_text())
    (source,) = dashboard["__inputs"]
    assert source["type"] == "datasource" and source["pluginId"] == "prometheus"
    uid = "${" + source["name"] + "}"
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert all(t["datasource"]["uid"] == uid for t in panel["targets"])
    assert dashboard["id"] is None and dashboard["uid"] == "jobledger-provider-health"
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
