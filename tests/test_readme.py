"""The README's "Try it in two minutes", run as written in a fresh copy of the project.

The commands are read from README.md, so the README cannot drift from what works. They run
with bash in a temporary copy of the repository (no ledger, no logs of an earlier run),
with this Python's virtual environment first on PATH, as a reader's shell would have it.
The one edit: the port, which is a free one here instead of 8000.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.doc_blocks import code_blocks, edited, section
from tests.helpers import ROOT, free_port

pytestmark = pytest.mark.slow
HEADING = "## Try it in two minutes"


def tracked_copy(target) -> None:
    """Copy what a fresh clone holds (the tracked files) to `target`."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True)
    if listed.returncode != 0:  # not a git checkout: everything but local state
        ignored = shutil.ignore_patterns(".git", ".venv", "instance", "__pycache__", "*.log")
        shutil.copytree(ROOT, target, ignore=ignored)
        return
    for name in filter(None, (n.decode() for n in listed.stdout.split(b"\0"))):
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)


def on_port(block: str, port: int) -> str:
    """The block with the service on `port` instead of 8000 (HOST=... gets PORT=...)."""
    if "HOST=127.0.0.1" in block:
        block = edited(block, {"HOST=127.0.0.1\n": f"HOST=127.0.0.1 PORT={port}\n"})
    block = block.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    assert "8000" not in block, block
    return block


def stop_leftovers(directory) -> None:
    """SIGKILL any process still running in `directory` (what a failed run left behind)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/cwd") == str(directory):
                    os.kill(int(entry), signal.SIGKILL)
            except OSError:
                pass


@pytest.fixture
def fresh_copy(tmp_path):
    copy = tmp_path / "jobledger"
    tracked_copy(copy)
    yield copy
    stop_leftovers(copy)


def run_in(copy, script: str) -> str:
    """Run lines with bash, as an interactive shell would (job control on), in `copy`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECEIVER_", "GUNICORN_"))}
    env.update(
        PATH=f"{os.path.dirname(sys.executable)}:{env['PATH']}",
        PROMETHEUS_MULTIPROC_DIR=str(copy.parent / "metrics"),
        HOME=str(copy.parent),
    )
    done = subprocess.run(
        ["bash", "-e", "-c", "set -m\n" + script],
        cwd=copy,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout
    return done.stdout


def answers(output: str) -> list[dict]:
    """The JSON answers curl printed (one after another, with no newline in between)."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while (start := output.find("{", at)) != -1:
        doc, at = decoder.raw_decode(output, start)
        found.append(doc)
    return found


def test_try_it_in_two_minutes_as_written(fresh_copy):
    start, ask = code_blocks(ROOT / "README.md", HEADING)
    port = free_port()
    # "Send the same body again (the last command)", ask the API, then stop it as told.
    again = start[start.index("curl -sS -X POST") :]
    assert "`kill %1` stops the service." in section(ROOT / "README.md", HEADING)
    script = "\n".join(
        [on_port(start, port), "echo @again", on_port(again, port), "echo @ask"]
        + [on_port(ask, port), "echo @stop", "kill %1", "wait %1 || true"]
    )
    output = run_in(fresh_copy, script)
    assert "Traceback" not in output and "curl:" not in output, output
    started, repeated, listed, _ = output.split("@")
    assert started.startswith("ledger instance/ledger.db: applied"), output
    health, first = answers(started)
    assert health == {"ok": True}
    assert first["ok"] is True and first["event_id"] == 1 and first["state"] == "succeeded"
    assert first["duplicate"] is False
    (second,) = answers(repeated.removeprefix("again"))
    assert second["duplicate"] is True and second["job_id"] == first["job_id"]
    (job,) = json.loads(listed.removeprefix("ask"))["jobs"]
    assert job["id"] == first["job_id"] and job["origin"] == "external"
    assert job["state"] == "succeeded"
    log = fresh_copy / "gunicorn.log"
    deadline = time.monotonic() + 40  # `kill %1` stops it: gunicorn finishes, then exits
    while "Shutting down: Master" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    text = log.read_text()
    assert f"Listening at: http://127.0.0.1:{port}" in text and "Traceback" not in text, text
    assert "Shutting down: Master" in text, text
