"""Every provider status API `reconcile` asks, in one table: which jobs it answers for, how
it is called, and how its answer is read. How fast each client may be asked is in
`submitter.operations.CLIENTS` (`poll_qps`), beside how it is opened.

| job | API |
| --- | --- |
| aliyun mps iproduction | QueryIProductionJob(JobId) |
| aliyun live edge_transcode | GetEdgeTranscodeJob(JobId, ClusterId from the job's params) |
| aliyun vod transcode | ListTranscodeTask(VideoId), then GetTranscodeTask of the newest task |
| aliyun vod preprocess | GetVideoInfo(VideoId) (its `PreprocessStatus`) |
| tencent vod procedure | GetTaskInfo (v2) if submitted with RunProcedure, else DescribeTaskDetail |
| tencent vod, any other kind with a task id | DescribeTaskDetail(TaskId) |

A job is asked about only through an id the provider gave it (or, for VOD, its video): a
poll answer must match the job it was asked for, never make a new one. VOD dynamic-image
jobs have no status API in the VOD API reference; their DynamicImageComplete notice or
their deadline settles them. Tencent DescribeTaskDetail answers for every task type the
task table reads (transcode, clip, concat, snapshot, image sprite, pull, edit/compose/split
media, ...); TENCENT_UNPOLLED are the Tencent jobs whose id is not a task id, or whose task
type it does not answer for.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from submitter.calls import Budget, ProviderClient

from ..providers import Event, status_answers

READ_BUDGET_S = 10.0  # one poll may take this long, retries included
# Reads may be repeated; a throttled poll is not retried here: reconcile leaves the whole
# client alone for a while instead.
POLITE = {"idempotent": True, "retry_throttled": False}
# media_cast: its id is a CastId; reduce_media_bitrate: DescribeTaskDetail's object is void.
TENCENT_UNPOLLED = frozenset({"upload", "media_cast", "reduce_media_bitrate"})


@dataclass(frozen=True)
class Poll:
    """One status question: which API, with which params."""

    api: "StatusAPI"
    params: dict = field(default_factory=dict)

    @property
    def client(self) -> str:
        """The client that asks it (a key of submitter.operations.CLIENTS), which is also
        the API family whose QPS limit the call counts against."""
        return self.api.client

    def ask(self, client: ProviderClient, budget: Budget) -> dict | None:
        """Make the call(s); return the answer to read, or None if there is nothing to ask."""
        return self.api.ask(self, client, budget)

    def read(self, answer: dict) -> Event | None:
        """Turn the answer into an Event (source `poll`), or None if it says nothing."""
        return self.api.read(answer, self.api.name)


def _ask_one(poll: Poll, client: ProviderClient, budget: Budget) -> dict:
    return client.call(poll.api.name, poll.params, budget=budget, **POLITE)


def _ask_transcode(poll: Poll, client: ProviderClient, budget: Budget) -> dict | None:
    """Find the video's newest transcode task, then ask for it with its jobs and outputs."""
    listing = client.call("ListTranscodeTask", poll.params, budget=budget, **POLITE)
    tasks = [t for t in listing.get("TranscodeTaskList") or [] if isinstance(t, dict)]
    tasks = [t for t in tasks if t.get("TranscodeTaskId")]
    if not tasks:
        return None
    newest = max(tasks, key=lambda t: str(t.get("CreationTime") or ""))
    params = {"TranscodeTaskId": newest["TranscodeTaskId"]}
    return client.call(poll.api.name, params, budget=budget, **POLITE)


@dataclass(frozen=True)
class StatusAPI:
    """One provider status API: its action, the client that calls it, how to ask and read."""

    name: str
    client: str
    read: Callable[[dict, str], Event | None]
    ask: Callable[[Poll, ProviderClient, Budget], dict | None] = _ask_one


MPS_JOB = StatusAPI("QueryIProductionJob", "aliyun.mps", status_answers.mps_iproduction)
LIVE_EDGE_JOB = StatusAPI("GetEdgeTranscodeJob", "aliyun.live", status_answers.live_edge_job)
VOD_TRANSCODE = StatusAPI(
    "GetTranscodeTask", "aliyun.vod", status_answers.vod_transcode_task, ask=_ask_transcode
)
VOD_VIDEO = StatusAPI("GetVideoInfo", "aliyun.vod", status_answers.vod_video)
TENCENT_TASK = StatusAPI("DescribeTaskDetail", "tencent.api", status_answers.tencent_task_detail)
TENCENT_V2_TASK = StatusAPI("GetTaskInfo", "tencent.v2", status_answers.tencent_v2_task)
STATUS_APIS = (MPS_JOB, LIVE_EDGE_JOB, VOD_TRANSCODE, VOD_VIDEO, TENCENT_TASK, TENCENT_V2_TASK)


def plan_poll(job: dict) -> Poll | None:
    """Return the status question for a job (raw ledger columns), or None if there is none."""
    key = (job["provider"], job["service"], job["kind"])
    job_id, media = job.get("provider_job_id"), job.get("media_id")
    try:
        params = json.loads(job.get("params") or "{}")
    except ValueError:
        params = {}
    params = params if isinstance(params, dict) else {}
    if key == ("aliyun", "mps", "iproduction") and job_id:
        return Poll(MPS_JOB, {"JobId": job_id})
    if key == ("aliyun", "live", "edge_transcode") and job_id and params.get("ClusterId"):
        return Poll(LIVE_EDGE_JOB, {"JobId": job_id, "ClusterId": params["ClusterId"]})
    if key == ("aliyun", "vod", "transcode") and media:
        return Poll(VOD_TRANSCODE, {"VideoId": media, "PageSize": 50})
    if key == ("aliyun", "vod", "preprocess") and media:
        return Poll(VOD_VIDEO, {"VideoId": media})
    if key[:2] == ("tencent", "vod") and job_id and key[2] not in TENCENT_UNPOLLED:
        if key[2] == "procedure" and job.get("operation") == "tencent.vod.RunProcedure":
            return Poll(TENCENT_V2_TASK, {"vodTaskId": job_id})
        return Poll(TENCENT_TASK, {"TaskId": job_id})
    return None
