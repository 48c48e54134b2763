"""The seven operations jobledger submits: what each one calls, needs, and answers.

Params are validated here, before anything is recorded or sent: a missing `VideoId` is a
UsageError, never a provider call. Other params pass through unchanged.
"""

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from . import aliyun, tencent_api, tencent_v2
from .aliyun import AliyunAPI
from .calls import Budget, ProviderClient, UsageError
from .tencent_api import TencentAPI
from .tencent_v2 import TencentV2


@dataclass(frozen=True)
class Client:
    """One provider API client: how it is opened, what it needs, how fast it may be polled.

    :ivar open: builds the client from the app's settings (calls.ProviderClient's shape)
    :ivar settings: the settings it needs (it refuses to open without them: NotConfigured)
    :ivar poll_qps: status calls per second `reconcile` makes through it, well below the
      documented limits (Live: 6000/min; Tencent v2: 100/min), across every process
    """

    open: Callable[[Mapping[str, Any]], ProviderClient]
    settings: tuple[str, ...]
    poll_qps: float


# Every client has one shape (calls.ProviderClient); a provider is added by filling it in.
CLIENTS: dict[str, Client] = {
    "aliyun.vod": Client(partial(AliyunAPI, service="vod"), aliyun.CREDENTIALS, 10.0),
    "aliyun.mps": Client(partial(AliyunAPI, service="mps"), aliyun.CREDENTIALS, 10.0),
    "aliyun.live": Client(partial(AliyunAPI, service="live"), aliyun.CREDENTIALS, 50.0),
    "tencent.api": Client(TencentAPI, tencent_api.CREDENTIALS, 10.0),
    "tencent.v2": Client(TencentV2, tencent_v2.CREDENTIALS, 100 / 60),
}
INPUT_TYPES = {  # RunProcedure inputType -> the input fields it needs (reference §1.3)
    "SingleFile": ("file.id",),
    "MultiFile": ("fileList.0.id",),
    "Stream": ("stream.streamId", "stream.startTimeStamp", "stream.endTimeStamp"),
    "PullFile": ("pull.url", "pull.fileName"),
}
V2_OBJECTS = ("file", "fileList", "stream", "pull")
JSON_PARAMS = ("JobParams",)  # documented as JSON text; an object is sent as its JSON
INTEGER_PARAMS = {"ProcessMediaByProcedure": ("SubAppId", "TasksPriority")}


class UnknownOperation(UsageError):
    """No operation has that name."""


@dataclass(frozen=True)
class Operation:
    """One operation (docs/http-api.md, "Submitting"): its API, kind and required params."""

    name: str
    client: str  # key of CLIENTS
    service: str
    kind: str
    api: str
    required: tuple[str, ...]
    job_id: tuple[tuple[str | int, ...], ...]  # paths in the answer, first found wins
    media_param: str | None = None
    state: str = "submitted"  # what an accepted submission moves the job to
    defaults: Mapping[str, str] = field(default_factory=dict)

    @property
    def provider(self) -> str:
        """Return `aliyun` or `tencent`."""
        return self.client.split(".", 1)[0]

    @property
    def toggles(self) -> bool:
        """Tell whether this acts on an existing Live edge job rather than creating a job."""
        return self.kind == "edge_transcode"

    def prepare(self, params: Mapping[str, Any], config: Mapping[str, Any]) -> dict:
        """Return the params to send, defaults applied; raise UsageError if any is missing."""
        if not isinstance(params, Mapping):
            raise UsageError("params must be an object of KEY: VALUE")
        params = {str(k): v for k, v in params.items() if v is not None}
        for key, value in self.defaults.items():
            params.setdefault(key, value)
        if self.name == "aliyun.mps.SubmitIProductionJob" and config.get("MPS_PIPELINE_ID"):
            params.setdefault("PipelineId", config["MPS_PIPELINE_ID"])
        if self.client == "tencent.v2":
            params = _prepare_v2(params)
        reserved = tencent_v2.COMMON if self.client == "tencent.v2" else aliyun.RESERVED
        clash = sorted(set(params) & reserved) if self.client != "tencent.api" else []
        if clash:
            raise UsageError(f"{self.name}: {clash[0]} is set by jobledger, not by params")
        needed = self.required
        if self.client == "tencent.v2":
            needed += INPUT_TYPES.get(str(params.get("inputType")), ())
        missing = [k for k in needed if not _present(params.get(k))]
        if missing:
            raise UsageError(f"{self.name} needs {', '.join(missing)}")
        nested = [k for k in needed if isinstance(params[k], (dict, list)) and k not in JSON_PARAMS]
        if nested:
            raise UsageError(f"{self.name}: {nested[0]} must be text, not an object or a list")
        for key in INTEGER_PARAMS.get(self.api, ()):
            if isinstance(params.get(key), str):
                try:
                    params[key] = int(params[key])
                except ValueError:
                    raise UsageError(f"{self.name}: {key} must be a whole number") from None
        return params

    def media_id(self, params: Mapping[str, Any]) -> str | None:
        """Return the media the job works on (VideoId, FileId, input URL), if any."""
        value = params.get(self.media_param) if self.media_param else None
        return str(value) if _present(value) else None

    def call(self, client: ProviderClient, params: Mapping[str, Any], budget: Budget) -> dict:
        """Make the provider call; return its answer."""
        return client.call(self.api, params, budget=budget)

    def provider_job_id(self, answer: Mapping[str, Any], params: Mapping[str, Any]) -> str | None:
        """Find the provider's job id in an accepted answer (or in params, for Live jobs)."""
        for path in self.job_id:
            node: Any = answer
            for step in path:
                if isinstance(step, int):
                    node = node[step] if isinstance(node, list) and len(node) > step else None
                else:
                    node = node.get(step) if isinstance(node, Mapping) else None
            if _present(node):
                return str(node)
        return str(params["JobId"]) if self.toggles else None


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _prepare_v2(params: dict) -> dict:
    """Flatten RunProcedure params; nested objects may come as JSON text (from the CLI)."""
    for key in V2_OBJECTS:
        if isinstance(params.get(key), str):
            try:
                params[key] = json.loads(params[key])
            except ValueError:
                raise UsageError(f"tencent.vod.RunProcedure: {key} must be JSON") from None
    flat = tencent_v2.flatten(params)
    input_type = flat.get("inputType")
    if input_type is not None and input_type not in INPUT_TYPES:
        known = ", ".join(INPUT_TYPES)
        raise UsageError(f"tencent.vod.RunProcedure: inputType must be one of {known}")
    if input_type == "MultiFile":
        indexes = sorted(
            {
                int(k.split(".")[1])
                for k in flat
                if k.startswith("fileList.") and k.split(".")[1].isdigit()
            }
        )
        if indexes != list(range(len(indexes))):
            raise UsageError("tencent.vod.RunProcedure: fileList must be numbered 0, 1, 2...")
        ids = [f"fileList.{i}.id" for i in indexes]
        missing = [k for k in ids if not _present(flat.get(k))]
        if missing:
            raise UsageError(f"tencent.vod.RunProcedure needs {', '.join(missing)}")
    return flat


def _op(name: str, client: str, kind: str, required: tuple, job_id: tuple, **kw) -> Operation:
    service = name.split(".")[1]
    if client == "aliyun":
        client = f"aliyun.{service}"  # one client per Alibaba service: its endpoint and SDK
    return Operation(name, client, service, kind, name.rsplit(".", 1)[1], required, job_id, **kw)


OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        _op(
            "aliyun.vod.SubmitPreprocessJobs",
            "aliyun",
            "preprocess",
            ("VideoId", "PreprocessType"),
            (("PreprocessJobs", "PreprocessJob", 0, "JobId"),),
            media_param="VideoId",
            defaults={"PreprocessType": "LivePreprocess"},
        ),
        _op(
            "aliyun.vod.SubmitDynamicImageJob",
            "aliyun",
            "dynamic_image",
            ("VideoId", "DynamicImageTemplateId"),
            (("DynamicImageJob", "JobId"),),
            media_param="VideoId",
        ),
        _op(
            "aliyun.mps.SubmitIProductionJob",
            "aliyun",
            "iproduction",
            ("FunctionName", "JobParams", "Input", "Output"),
            (("JobId",),),
            media_param="Input",
        ),
        _op(
            "aliyun.live.StartEdgeTranscodeJob",
            "aliyun",
            "edge_transcode",
            ("ClusterId", "JobId"),
            (("JobId",),),
            state="running",
        ),
        _op(
            "aliyun.live.StopEdgeTranscodeJob",
            "aliyun",
            "edge_transcode",
            ("ClusterId", "JobId"),
            (("JobId",),),
            state="stopped",
        ),
        _op(
            "tencent.vod.RunProcedure",
            "tencent.v2",
            "procedure",
            ("inputType", "procedure"),
            (("vodTaskId",),),
            media_param="file.id",
        ),
        _op(
            "tencent.vod.ProcessMediaByProcedure",
            "tencent.api",
            "procedure",
            ("FileId", "ProcedureName"),
            (("TaskId",), ("ReviewAudioVideoTaskId",)),
            media_param="FileId",
        ),
    )
}


def required_params() -> list[tuple[str, str]]:
    """Name each operation and the params it needs, as `submit --help` lists them."""
    rows = []
    for op in OPERATIONS.values():
        needed = [k for k in op.required if k not in op.defaults]
        text = ", ".join(needed)
        if op.client == "tencent.v2":
            inputs = "; ".join(f"{t}: {', '.join(f)}" for t, f in INPUT_TYPES.items())
            text += f", and the inputType's fields ({inputs})"
        for key, value in op.defaults.items():
            text += f" ({key} defaults to {value})"
        rows.append((op.name, text))
    return rows


def get_operation(name: str) -> Operation:
    """Return the operation called `name`; raise UnknownOperation naming the known ones."""
    try:
        return OPERATIONS[name]
    except KeyError:
        raise UnknownOperation(
            f"unknown operation {name!r}; known: {', '.join(OPERATIONS)}"
        ) from None


def missing_settings(config: Mapping[str, Any], client: str) -> list[str]:
    """Name the `RECEIVER_*` settings a client needs and lacks ([] when it can open)."""
    return [f"RECEIVER_{name}" for name in CLIENTS[client].settings if not config.get(name)]


def open_client(client: str, config: Mapping[str, Any]) -> ProviderClient:
    """Open a client (a key of CLIENTS); raise NotConfigured naming the missing settings."""
    return CLIENTS[client].open(config)
