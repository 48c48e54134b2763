"""Property tests: order and duplication never change the outcome; parsers fail
only with their own error; the hooks never answer 500.

Example counts are kept moderate so the file runs in well under a minute.
"""

import json
import random
import string
from itertools import count

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver.providers.aliyun import mns as queue
from receiver.providers.aliyun import mps as aliyun_mps
from receiver.providers.aliyun import vod as aliyun_vod
from receiver.providers.base import InvalidPayload
from receiver.providers.tencent import vod as tencent_vod
from store import migrate, open_ledger
from tests.helpers import fixture_bytes, fixture_json, tencent_signed, vod_headers

pytestmark = pytest.mark.slow
FAST = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_serial = count()


# -- notice sequences ---------------------------------------------------------------------


def vod_transcode(final_status: str = "success", preprocess: bool = False) -> list[bytes]:
    """Two StreamTranscodeComplete progress notices, then the TranscodeComplete, in order."""
    video = f"prop-video-{next(_serial)}"
    stream = fixture_json("aliyun_vod-StreamTranscodeComplete.json")
    final = fixture_json("aliyun_vod-TranscodeComplete.json")
    notices = []
    for i, definition in enumerate(("LD", "SD")):
        doc = dict(stream, VideoId=video, Definition=definition)
        doc["EventTime"] = f"2026-11-21T01:00:0{i}Z"
        doc["FileUrl"] = f"http://vod.example.com/{video}/{definition}.mp4"
        if preprocess:
            doc["Preprocess"] = True
        notices.append(doc)
    doc = dict(final, VideoId=video, EventTime="2026-11-21T01:00:09Z", Status=final_status)
    if final_status == "fail":
        doc.update(ErrorCode="InvalidVideo.NoStreams", ErrorMessage="no video stream")
    if preprocess:
        doc["Preprocess"] = True
    notices.append(doc)
    return [json.dumps(n).encode() for n in notices]


def tencent_v3(final_code: int = 0) -> list[bytes]:
    """A task flow's PROCESSING notice, then its FINISH notice (API 3.0)."""
    task_id = f"1256768367-Procedure-prop{next(_serial)}t1"
    doc = fixture_json("tencent_vod-v3-ProcedureStateChanged.json")
    task = dict(doc["ProcedureStateChangeEvent"], TaskId=task_id)
    processing = dict(task, Status="PROCESSING")
    for key in list(processing):
        if key.endswith("ResultSet"):
            processing[key] = []
    finish = dict(task, Status="FINISH", ErrCode=final_code)
    if final_code:
        finish["Message"] = "source file error"
    return [
        json.dumps(dict(doc, ProcedureStateChangeEvent=processing)).encode(),
        json.dumps(dict(doc, ProcedureStateChangeEvent=finish)).encode(),
    ]


def tencent_v2(final_code: int = 0) -> list[bytes]:
    """The legacy v2 ProcedureStateChanged: PROCESSING, then FINISH."""
    task_id = f"125676836723-prop-{next(_serial)}"
    doc = fixture_json("tencent_vod-v2-ProcedureStateChanged.json")
    data = dict(doc["data"], vodTaskId=task_id)
    processing = dict(data, status="PROCESSING")
    finish = dict(data, status="FINISH", errCode=final_code)
    return [
        json.dumps(dict(doc, data=processing)).encode(),
        json.dumps(dict(doc, data=finish)).encode(),
    ]


SEQUENCES = {
    "vod-success": lambda: (aliyun_vod, vod_transcode("success")),
    "vod-fail": lambda: (aliyun_vod, vod_transcode("fail")),
    "vod-preprocess": lambda: (aliyun_vod, vod_transcode("success", preprocess=True)),
    "tencent-v3": lambda: (tencent_vod, tencent_v3()),
    "tencent-v3-failed": lambda: (tencent_vod, tencent_v3(final_code=10008)),
    "tencent-v2": lambda: (tencent_vod, tencent_v2()),
    "tencent-v2-failed": lambda: (tencent_vod, tencent_v2(final_code=1)),
}


def reserialized(body: bytes, style: int) -> bytes:
    """The same notice as a sender might deliver it again: same bytes, or re-encoded."""
    if style == 0:
        return body
    doc = json.loads(body)
    if style == 1:
        return json.dumps(doc, sort_keys=True, indent=2).encode()
    return json.dumps(dict(reversed(list(doc.items()))), separators=(",", ":")).encode()


def outcome(ledger, provider, bodies: list[bytes]) -> dict:
    """Record the bodies in turn; return the job they all landed on."""
    job_ids = set()
    for body in bodies:
        result = ledger.notices.record(provider.parse(body), source="http", verified=True)
        job_ids.add(result.job_id)
    assert len(job_ids) == 1, f"notices of one job landed on {len(job_ids)} jobs"
    job = ledger.jobs.get(job_ids.pop())
    return {
        k: job[k]
        for k in (
            "state",
            "outputs",
            "error_code",
            "error_message",
            "preprocess",
            "finished_at",
            "provider_job_id",
            "media_id",
        )
    }


@pytest.fixture
def prop_ledger(tmp_path_factory):
    path = tmp_path_factory.mktemp("prop") / "ledger.db"
    migrate(path)
    with open_ledger(path) as ledger:
        yield ledger
        # the counters kept in each transaction agree with the rows, whatever happened
        counted = dict(
            (
                (s, n)
                for s, n in ledger.conn.execute(
                    "SELECT state, SUM(n) FROM job_counts GROUP BY state HAVING SUM(n) != 0"
                )
            )
        )
        actual = dict(ledger.conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state"))
        assert counted == actual


@FAST
@given(
    name=st.sampled_from(sorted(SEQUENCES)),
    extra=st.lists(st.tuples(st.integers(0, 10), st.integers(0, 2)), max_size=6),
    shuffle=st.randoms(use_true_random=False),
)
def test_any_order_and_duplication_ends_in_the_in_order_state(prop_ledger, name, extra, shuffle):
    provider, in_order = SEQUENCES[name]()
    expected = outcome(prop_ledger, provider, in_order)

    provider, fresh = SEQUENCES[name]()  # the same story about another job
    deliveries = list(fresh) + [reserialized(fresh[i % len(fresh)], style) for i, style in extra]
    shuffle.shuffle(deliveries)
    got = outcome(prop_ledger, provider, deliveries)
    for key in ("provider_job_id", "media_id"):
        got.pop(key), expected.pop(key)
    # a notice without a provider time is applied at "now": compare that it finished, not when
    for result in (got, expected):
        result["finished_at"] = result["finished_at"] is not None
    assert got == expected


# -- parsers fail only with InvalidPayload --------------------------------------------------

# text includes lone surrogates: json.dumps writes them as "\\ud800" escapes that a
# sender may really send, and that cannot be encoded back to UTF-8
texts = st.text(max_size=20) | st.text(
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=2
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | texts,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)

FIXTURE_DOCS = [
    "aliyun_vod-TranscodeComplete.json",
    "aliyun_vod-StreamTranscodeComplete.json",
    "aliyun_vod-DynamicImageComplete-object.json",
    "aliyun_vod-SnapshotComplete.json",
    "aliyun_vod-FileUploadComplete.json",
    "aliyun_vod-ImageUploadComplete.json",
    "aliyun_mps-IProduction-VideoH2V.json",
    "aliyun_mps-TextToSpeech.json",
    "aliyun_mps-Transcode-notice.json",
    "tencent_vod-v3-ProcedureStateChanged.json",
    "tencent_vod-v2-ProcedureStateChanged.json",
    "tencent_vod-v2-NewFileUpload.json",
    "tencent_vod-v2-PullComplete.json",
    "tencent_vod-v2-TranscodeComplete.json",
]


def mutate(doc, rnd: random.Random, replacement):
    """Replace some values of a real sample (at any depth) with arbitrary JSON."""
    if isinstance(doc, dict):
        return {
            k: (replacement() if rnd.random() < 0.25 else mutate(v, rnd, replacement))
            for k, v in doc.items()
        }
    if isinstance(doc, list):
        return [replacement() if rnd.random() < 0.25 else mutate(v, rnd, replacement) for v in doc]
    return doc


@st.composite
def mutated_samples(draw) -> bytes:
    doc = fixture_json(draw(st.sampled_from(FIXTURE_DOCS)))
    rnd = draw(st.randoms(use_true_random=False))
    doc = mutate(doc, rnd, lambda: draw(json_values))
    return json.dumps(doc, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")


ODD_BYTES = [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x00", b"\xef\xbb\xbf"]


@st.composite
def byte_mangled_samples(draw) -> bytes:
    """A real sample with odd bytes (invalid or surrogate UTF-8, NUL, BOM) spliced in."""
    body = fixture_bytes(draw(st.sampled_from(FIXTURE_DOCS)))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.sampled_from(ODD_BYTES) | st.binary(max_size=4)) + body[at:]
    return body


bodies = st.one_of(
    st.binary(max_size=300),
    byte_mangled_samples(),
    st.text(max_size=200).map(str.encode),
    json_values.map(lambda v: json.dumps(v).encode()),
    mutated_samples(),
    st.sampled_from(FIXTURE_DOCS).map(fixture_bytes),
)

PARSERS = {
    "aliyun_vod": aliyun_vod.parse,
    "tencent_vod": tencent_vod.parse,
    "aliyun_mps": aliyun_mps.parse,
    "queue": lambda body: queue.parse(body.decode("utf-8", "replace")),
    "queue-bytes": queue.parse,
}


@pytest.mark.parametrize("parser", sorted(PARSERS))
@settings(max_examples=150, deadline=None)
@given(body=bodies)
def test_parsers_raise_only_invalid_payload(parser, body):
    try:
        event = PARSERS[parser](body)
    except InvalidPayload:
        return
    # whatever parses is something the ledger can store
    assert isinstance(event.event_type, str)
    assert event.dedup_key is None or len(event.dedup_key) == 16
    json.dumps(list(event.outputs))


# -- the hooks never answer 500 -------------------------------------------------------------


@st.composite
def deliveries(draw):
    path = draw(st.sampled_from(["/hooks/aliyun/vod", "/hooks/tencent/vod"]))
    body = draw(bodies)
    signed = draw(st.booleans())
    headers = {"Content-Type": draw(st.sampled_from(["application/json", "text/plain", ""]))}
    if path == "/hooks/aliyun/vod" and signed:
        headers.update(vod_headers())
    elif signed:
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):
            doc = None
        if isinstance(doc, dict):
            body = tencent_signed(doc)
    if draw(st.booleans()):
        noise = draw(
            st.text(string.ascii_letters + string.digits + string.punctuation + " é", max_size=40)
        )
        headers[draw(st.sampled_from(["X-VOD-SIGNATURE", "X-VOD-TIMESTAMP", "X-Other"]))] = noise
    query = draw(st.sampled_from(["", "?token=hook-secret-1", "?token=wrong", "?token=%FF"]))
    return path + query, body, headers


@pytest.mark.parametrize("hook_token", [None, "hook-secret-1"])
@FAST
@given(delivery=deliveries())
def test_hooks_never_answer_500(make_app, hook_token, delivery):
    client = make_app(HOOK_TOKEN=hook_token).test_client()
    path, body, headers = delivery
    response = client.post(path, data=body, headers=headers)
    assert response.status_code < 500 or response.status_code == 503, (
        response.status_code,
        response.get_data(as_text=True)[:300],
    )
    assert response.status_code != 500
    assert response.is_json
