"""Which status API answers for a job, and the call that asks it.

A job is asked about only through an id the provider gave it (or, for VOD, its video):
a poll answer must match the job it was asked for, never make a new one.

| job | API |
| --- | --- |
| aliyun mps iproduction | QueryIProductionJob(JobId) |
| aliyun live edge_transcode | GetEdgeTranscodeJob(JobId, ClusterId from the job's params) |
| aliyun vod transcode | ListTranscodeTask(VideoId), then GetTranscodeTask of the newest task |
| aliyun vod preprocess | GetVideoInfo(VideoId) (its `PreprocessStatus`) |
| tencent vod procedure | GetTaskInfo (v2) if submitted with RunProcedure, else DescribeTaskDetail |
| tencent vod, any other kind with a task id | DescribeTaskDetail(TaskId) |

VOD dynamic-image jobs have no status API in the VOD API reference; their
DynamicImageComplete notice or their deadline settles them. Tencent DescribeTaskDetail
answers for every task type the receiver's task table reads (transcode, clip, concat,
snapshot, image sprite, pull, edit/compose/split media, ...); the kinds below are the
Tencent jobs whose id is not a task id, or whose task type it does not answer for.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from .calls import Budget, ProviderClient

READ_BUDGET_S = 10.0  # one poll may take this long, retries included
# Reads may be repeated; a throttled poll is not retried here: reconcile leaves the whole API
# alone for a while instead.
POLITE = {"idempotent": True, "retry_throttled": False}
# media_cast: its id is a CastId; reduce_media_bitrate: DescribeTaskDetail's object is void.
TENCENT_UNPOLLED = frozenset({"upload", "media_cast", "reduce_media_bitrate"})


@dataclass(frozen=True)
class Poll:
    """One status question: which client (also the QPS bucket), which API, which params."""

    client: str  # key of operations.CLIENTS: "aliyun.vod", "aliyun.mps", "tencent.api"...
    api: str
    params: dict = field(default_factory=dict)

    @property
    def family(self) -> str:
        """The API family whose QPS limit this call counts against (one per client)."""
        return self.client

    def ask(self, client: ProviderClient, budget: Budget) -> dict | None:
        """Make the call(s); return the answer to parse, or None if there is nothing to ask."""
        return ASKERS.get(self.api, _ask_one)(self, client, budget)


def _ask_one(poll: Poll, client: ProviderClient, budget: Budget) -> dict:
    return client.call(poll.api, poll.params, budget=budget, **POLITE)


def _ask_transcode(poll: Poll, client: ProviderClient, budget: Budget) -> dict | None:
    """Find the video's newest transcode task, then ask for it with its jobs and outputs."""
    listing = client.call("ListTranscodeTask", poll.params, budget=budget, **POLITE)
    tasks = [t for t in listing.get("TranscodeTaskList") or [] if isinstance(t, dict)]
    tasks = [t for t in tasks if t.get("TranscodeTaskId")]
    if not tasks:
        return None
    newest = max(tasks, key=lambda t: str(t.get("CreationTime") or ""))
    params = {"TranscodeTaskId": newest["TranscodeTaskId"]}
    return client.call("GetTranscodeTask", params, budget=budget, **POLITE)


ASKERS: dict[str, Callable[[Poll, ProviderClient, Budget], dict | None]] = {
    "GetTranscodeTask": _ask_transcode,
}


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
        return Poll("aliyun.mps", "QueryIProductionJob", {"JobId": job_id})
    if key == ("aliyun", "live", "edge_transcode") and job_id and params.get("ClusterId"):
        return Poll(
            "aliyun.live",
            "GetEdgeTranscodeJob",
            {"JobId": job_id, "ClusterId": params["ClusterId"]},
        )
    if key == ("aliyun", "vod", "transcode") and media:
        return Poll("aliyun.vod", "GetTranscodeTask", {"VideoId": media, "PageSize": 50})
    if key == ("aliyun", "vod", "preprocess") and media:
        return Poll("aliyun.vod", "GetVideoInfo", {"VideoId": media})
    if key[:2] == ("tencent", "vod") and job_id and key[2] not in TENCENT_UNPOLLED:
        if key[2] == "procedure" and job.get("operation") == "tencent.vod.RunProcedure":
            return Poll("tencent.v2", "GetTaskInfo", {"vodTaskId": job_id})
        return Poll("tencent.api", "DescribeTaskDetail", {"TaskId": job_id})
    return None
