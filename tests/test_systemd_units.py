"""The systemd units in deploy/systemd/: valid for systemd, one per Procfile process, and
their commands work as written.

`systemd-analyze verify` (Debian package `systemd`) checks each unit as systemd would load
it, executables included, with the install path /opt/jobledger pointed at this checkout
and its virtual environment. The web unit's and a worker's commands then run as the units
give them, with the shipped settings file, the socket folder in a temporary directory.
"""

import configparser
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest

from receiver.cli import COMMANDS
from tests.doc_blocks import section
from tests.helpers import ROOT
from tests.proxy import request

pytestmark = pytest.mark.slow
UNITS = ROOT / "deploy" / "systemd"
INSTALLED = "/opt/jobledger"
BIN = os.path.dirname(sys.executable)  # the virtual environment's bin, as /opt/jobledger/.venv/bin


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip())


def here(text: str) -> str:
    """A unit's text with the install path pointed at this checkout and its venv."""
    return text.replace(f"{INSTALLED}/.venv/bin/", f"{BIN}/").replace(INSTALLED, str(ROOT))


def service_section(name: str) -> dict[str, list[str]]:
    """The [Service] keys of a unit, each with every value it is given (in order)."""
    out: dict[str, list[str]] = {}
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((UNITS / name).read_text())
    for key, value in parser.items("Service"):
        out[key] = [v for v in value.splitlines() if v]
    return out


def worker_instances() -> list[str]:
    """The template instances of the Procfile's `flask --app wsgi <command>` lines."""
    return [
        command.split()[-1]
        for name, command in procfile().items()
        if name != "release" and command.startswith("flask --app wsgi ")
    ]


def test_the_units_pass_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        message = "systemd-analyze not found (Debian: apt-get install systemd; .ci/run does)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    for unit in UNITS.iterdir():
        if unit.suffix in (".service", ".target"):
            (tmp_path / unit.name).write_text(here(unit.read_text()))
    names = ["jobledger.target", "jobledger-web.service"]
    names += [f"jobledger@{instance}.service" for instance in worker_instances()]
    done = subprocess.run(
        [analyze, "verify", *(str(tmp_path / n) for n in names)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Unknown keys and bad values are warnings only: none may be printed.
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def test_every_procfile_process_has_its_unit_and_its_steps():
    processes = procfile()
    web = service_section("jobledger-web.service")
    worker = service_section("jobledger@.service")
    prefix = f"{INSTALLED}/.venv/bin/"
    assert web["ExecStart"] == [prefix + processes["web"]]
    for unit in (web, worker):  # the release step, before every process
        assert unit["ExecStartPre"] == [prefix + processes["release"]]
    known = {command.name for command in COMMANDS}
    steps = section(ROOT / "docs" / "operations.md", "### Deployment steps")
    for instance in worker_instances():
        started = worker["ExecStart"][0].replace("%i", instance)
        assert started == f"{prefix}flask --app wsgi {instance}"
        assert instance in known
        assert f"jobledger@{instance}.service" in steps, f"the steps do not name {instance}"


def settings_file(tmp_path) -> dict[str, str]:
    """The shipped settings file, as systemd reads it, with the test's ledger and a token."""
    env = {}
    for line in (UNITS / "jobledger.env").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip().strip("'")
    assert env["RECEIVER_DATABASE"] == "/var/lib/jobledger/ledger.db"
    assert env["RECEIVER_OPS_TOKEN"] == ""  # the steps fill it in with a fresh token
    env.update(RECEIVER_DATABASE=str(tmp_path / "ledger.db"), RECEIVER_OPS_TOKEN="t0ken")
    return env


def unit_environment(tmp_path, unit: dict[str, list[str]]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECEIVER_", "GUNICORN_"))}
    assert unit["EnvironmentFile"] == ["/etc/jobledger/jobledger.env"]
    env.update(settings_file(tmp_path))
    for assignment in unit.get("Environment", []):
        key, _, value = assignment.partition("=")
        env[key] = value.replace("/run/jobledger", str(tmp_path / "run"))
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "metrics")  # PrivateTmp's /tmp
    return env


def run_unit(tmp_path, name: str, instance: str = "") -> subprocess.Popen:
    """Run a unit's ExecStartPre, then start its ExecStart, as the unit gives them."""
    unit = service_section(name)
    assert unit["WorkingDirectory"] == [INSTALLED]
    env = unit_environment(tmp_path, unit)
    for line in unit["ExecStartPre"]:
        done = subprocess.run(
            shlex.split(here(line)), cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
    with open(tmp_path / f"{name}.log", "wb") as log:
        return subprocess.Popen(
            shlex.split(here(unit["ExecStart"][0]).replace("%i", instance)),
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_web_units_commands_serve_on_the_socket_folder(tmp_path):
    web = service_section("jobledger-web.service")
    assert web["RuntimeDirectory"] == ["jobledger"] and web["RuntimeDirectoryMode"] == ["0750"]
    (tmp_path / "run").mkdir(mode=0o750)  # what RuntimeDirectory= makes
    proc = run_unit(tmp_path, "jobledger-web.service")
    sock = f"unix:{tmp_path / 'run' / 'web.sock'}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if request(sock, "GET", "/healthz", timeout=1)[0] == 200:
                    break
            except OSError:
                time.sleep(0.05)
        status, _ = request(sock, "GET", "/api/jobs", headers={"Authorization": "Bearer t0ken"})
        assert status == 200
    finally:
        assert stop(proc) == 0
    log = (tmp_path / "jobledger-web.service.log").read_text()
    assert f"Listening at: {sock}" in log and "Traceback" not in log, log


@pytest.mark.parametrize("instance", worker_instances())
def test_each_worker_instance_starts_and_stops_cleanly(tmp_path, instance):
    proc = run_unit(tmp_path, "jobledger@.service", instance)
    log = tmp_path / "jobledger@.service.log"
    if instance in ("reconcile", "deliver"):  # loops until told to stop, saying what it does
        started = f"{instance}.started"
        deadline = time.monotonic() + 30
        while started not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.05)
        assert started in log.read_text()
        assert stop(proc) == 0, log.read_text()
    else:  # a consumer without its provider settings says which, in one line, and exits
        assert proc.wait(timeout=30) == 2, log.read_text()
        output = log.read_text().strip()
        assert "Traceback" not in output and "RECEIVER_" in output.splitlines()[-1], output


def test_the_steps_fill_in_a_fresh_ops_token(tmp_path):
    steps = section(ROOT / "docs" / "operations.md", "### Deployment steps")
    (fill,) = [line for line in steps.splitlines() if line.startswith("sed -i")]
    settings = tmp_path / "jobledger.env"
    shutil.copy(UNITS / "jobledger.env", settings)
    done = subprocess.run(
        ["bash", "-e", "-c", fill.replace("/etc/jobledger/jobledger.env", str(settings))],
        env={**os.environ, "token": "fresh-Token_1"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert "\nRECEIVER_OPS_TOKEN=fresh-Token_1\n" in settings.read_text()


def test_the_settings_file_names_only_real_settings():
    from receiver.config import PREFIX, SETTINGS

    named = re.findall(r"^#? ?(RECEIVER_[A-Z_]+)=", (UNITS / "jobledger.env").read_text(), re.M)
    assert len(named) >= 8
    assert {name.removeprefix(PREFIX) for name in named} <= set(SETTINGS)
