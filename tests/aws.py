"""AWS for the tests: moto's server mode, a real HTTP server that boto3 is pointed at with
its own AWS_ENDPOINT_URL_* variables (SNS and SQS), so nothing of boto3's is mocked."""

import subprocess
import sys
import time

import pytest

from tests.helpers import free_port, http


@pytest.fixture
def moto_server(monkeypatch):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if http("GET", endpoint + "/moto-api/")[0] < 500:
                break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise
            time.sleep(0.1)
    for name, value in {
        "AWS_ENDPOINT_URL_SNS": endpoint,
        "AWS_ENDPOINT_URL_SQS": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    yield endpoint
    proc.terminate()
    proc.wait(timeout=10)
