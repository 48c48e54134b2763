"""Tencent VOD API 3.0 tasks: which event and which status answer report on which task.

One row per task type, from the official SDK's models (`EventContent` names the event
object of each event type, `DescribeTaskDetailResponse` the task object of each task type):

- `events`: the `EventType` values of the event (where the SDK and the documentation
  spell an event differently, both);
- `key`: the event object's key in the event (`TranscodeCompleteEvent`...);
- `detail`: DescribeTaskDetail's `TaskType` values and the answer's key for the object;
- `files`: where the media's FileId is, first found wins;
- `outputs`: where the results are (an object, or a list of objects or URLs);
- `parts`: nested elements that report their own status or error code.

The same row reads the event and the status answer, so a task settles the same way
however the news of it arrives.
"""

from dataclasses import dataclass

from .base import InvalidPayload, parse_time, text
from .tencent_procedure import v3_flow
from .tencent_tasks import outputs, path, settle


@dataclass(frozen=True)
class TaskSpec:
    """How one kind of API 3.0 task is read; see the module docstring."""

    kind: str
    events: tuple[str, ...]
    key: str
    detail: tuple[tuple[str, ...], str] = ((), "")
    files: tuple[str, ...] = ("FileId",)
    outputs: tuple[str, ...] = ("Output",)
    parts: tuple[str, ...] = ()
    flow: bool = False  # a task flow: one status per subtask (see tencent_procedure)


_IN = ("FileId", "Input.FileId")
_OUT = ("Output.FileId",)

SPECS: tuple[TaskSpec, ...] = (
    TaskSpec(
        "procedure",
        ("ProcedureStateChanged",),
        "ProcedureStateChangeEvent",
        (("Procedure",), "ProcedureTask"),
        flow=True,
    ),
    TaskSpec(
        "pull",
        ("PullComplete",),
        "PullCompleteEvent",
        (("PullUpload",), "PullUploadTask"),
        outputs=("FileUrl", "MediaBasicInfo.MediaUrl"),
    ),
    TaskSpec(
        "edit_media",
        ("EditMediaComplete",),
        "EditMediaCompleteEvent",
        (("EditMedia",), "EditMediaTask"),
        files=("FileId", *_OUT),
    ),
    TaskSpec(
        "split_media",
        ("SplitMediaComplete",),
        "SplitMediaCompleteEvent",
        (("SplitMedia",), "SplitMediaTask"),
        outputs=("FileInfoSet",),
        parts=("FileInfoSet",),
    ),
    TaskSpec(
        "compose_media",
        ("ComposeMediaComplete",),
        "ComposeMediaCompleteEvent",
        (("ComposeMedia",), "ComposeMediaTask"),
        files=("FileId", *_OUT),
    ),
    TaskSpec(
        "clip",
        ("ClipComplete",),
        "ClipCompleteEvent",
        (("Clip",), "ClipTask"),
        files=("SrcFileId", "FileId"),
        outputs=("FileInfo",),
        parts=("FileInfo",),
    ),
    TaskSpec(
        "transcode",
        ("TranscodeComplete",),
        "TranscodeCompleteEvent",
        (("Transcode",), "TranscodeTask"),
        outputs=("PlayInfoSet",),
    ),
    TaskSpec(
        "image_sprite",
        ("CreateImageSpriteComplete",),
        "CreateImageSpriteCompleteEvent",
        (("ImageSprite", "CreateImageSprite"), "CreateImageSpriteTask"),
        outputs=("ImageSpriteUrlSet", "WebVttUrl"),
    ),
    TaskSpec(
        "concat",
        ("ConcatComplete",),
        "ConcatCompleteEvent",
        (("Concat",), "ConcatTask"),
        outputs=("FileInfoSet",),
        parts=("FileInfoSet",),
    ),
    TaskSpec(
        "snapshot",
        ("CreateSnapshotByTimeOffsetComplete", "SnapshotByTimeOffsetComplete"),
        "SnapshotByTimeOffsetCompleteEvent",
        (("SnapshotByTimeOffset",), "SnapshotByTimeOffsetTask"),
        outputs=("SnapshotInfoSet",),
        parts=("SnapshotInfoSet",),
    ),
    TaskSpec(
        "wechat_publish",
        ("WechatPublishComplete",),
        "WechatPublishCompleteEvent",
        (("WechatPublish",), "WechatPublishTask"),
        outputs=("WechatUrl",),
    ),
    TaskSpec(
        "wechat_mini_program_publish",
        ("WechatMiniProgramPublishComplete",),
        "WechatMiniProgramPublishCompleteEvent",
        (("WechatMiniProgramPublish",), "WechatMiniProgramPublishTask"),
        outputs=(),
    ),
    TaskSpec(
        "remove_watermark",
        ("RemoveWatermark", "RemoveWatermarkComplete"),
        "RemoveWatermarkCompleteEvent",
        (("RemoveWatermark", "RemoveWatermarkTask"), "RemoveWatermarkTask"),
        files=_IN,
    ),
    TaskSpec(
        "rebuild_media",
        ("RebuildMediaComplete",),
        "RebuildMediaCompleteEvent",
        (("RebuildMedia",), "RebuildMediaTask"),
        files=_IN,
    ),
    TaskSpec(
        "extract_trace_watermark",
        ("ExtractTraceWatermarkComplete",),
        "ExtractTraceWatermarkCompleteEvent",
        (("ExtractTraceWatermark",), "ExtractTraceWatermarkTask"),
        files=_IN,
    ),
    TaskSpec(
        "extract_copyright_watermark",
        ("ExtractCopyRightWatermarkComplete",),
        "ExtractCopyRightWatermarkCompleteEvent",
        (("ExtractCopyRightWatermark",), "ExtractCopyRightWatermarkTask"),
        files=_IN,
    ),
    TaskSpec(
        "review_audio_video",
        ("ReviewAudioVideoComplete",),
        "ReviewAudioVideoCompleteEvent",
        (("ReviewAudioVideo",), "ReviewAudioVideoTask"),
        files=_IN,
    ),
    TaskSpec(
        "reduce_media_bitrate",
        ("ReduceMediaBitrateComplete",),
        "ReduceMediaBitrateCompleteEvent",
        ((), ""),  # the SDK marks DescribeTaskDetail's ReduceMediaBitrateTask as void
        flow=True,
    ),
    TaskSpec(
        "describe_file_attributes",
        ("DescribeFileAttributesComplete",),
        "DescribeFileAttributesCompleteEvent",
        (("DescribeFileAttributes", "DescribeFileAttributesTask"), "DescribeFileAttributesTask"),
    ),
    TaskSpec(
        "quality_inspect",
        ("QualityInspectComplete",),
        "QualityInspectCompleteEvent",
        (("QualityInspect",), "QualityInspectTask"),
        files=_IN,
    ),
    TaskSpec(
        "quality_enhance",
        ("QualityEnhanceComplete",),
        "QualityEnhanceCompleteEvent",
        (("QualityEnhance",), "QualityEnhanceTask"),
        files=_IN,
    ),
    TaskSpec(
        "complex_adaptive_dynamic_streaming",
        ("ComplexAdaptiveDynamicStreamingComplete",),
        "ComplexAdaptiveDynamicStreamingCompleteEvent",
        (("ComplexAdaptiveDynamicStreaming",), "ComplexAdaptiveDynamicStreamingTask"),
        outputs=("ComplexAdaptiveDynamicStreamingTaskResultSet",),
        parts=("ComplexAdaptiveDynamicStreamingTaskResultSet",),
    ),
    TaskSpec(
        "process_media_by_mps",
        ("ProcessMediaByMPSComplete",),
        "ProcessMediaByMPSCompleteEvent",
        (("ProcessMediaByMPS",), "ProcessMediaByMPSTask"),
        outputs=("SubTaskSet",),
        parts=("SubTaskSet",),
    ),
    TaskSpec(
        "aigc_image",
        ("AigcImageTaskComplete", "AigcImageComplete"),
        "AigcImageCompleteEvent",
        (("AigcImageTask",), "AigcImageTask"),
        outputs=("Output.FileInfos",),
    ),
    TaskSpec(
        "aigc_video",
        ("AigcVideoTaskComplete", "AigcVideoComplete"),
        "AigcVideoCompleteEvent",
        (("AigcVideoTask",), "AigcVideoTask"),
        outputs=("Output.FileInfos",),
    ),
    TaskSpec(
        "scene_aigc_image",
        ("SceneAigcImageTaskComplete", "SceneAigcImageComplete"),
        "SceneAigcImageCompleteEvent",
        (("SceneAigcImageTask",), "SceneAigcImageTask"),
        outputs=("Output.FileInfos",),
    ),
    TaskSpec(
        "extract_blind_watermark",
        ("ExtractBlindWatermarkComplete",),
        "ExtractBlindWatermarkComplete",
        (("ExtractBlindWatermark",), "ExtractBlindWatermarkTask"),
        files=("InputInfo.FileId",),
        outputs=(),
    ),
    TaskSpec(
        "aigc_custom_element",
        ("CreateAigcAdvancedCustomElementComplete",),
        "CreateAigcAdvancedCustomElementCompleteEvent",
        (("CreateAigcAdvancedCustomElement",), "CreateAigcAdvancedCustomElementTask"),
        outputs=("Output.InfoList",),
    ),
    TaskSpec(
        "aigc_custom_voice",
        ("CreateAigcCustomVoiceComplete",),
        "CreateAigcCustomVoiceCompleteEvent",
        (("CreateAigcCustomVoice",), "CreateAigcCustomVoiceTask"),
        outputs=("Output.InfoList",),
    ),
    TaskSpec(
        "aigc_face_info",
        ("DescribeAigcFaceInfoAsyncComplete",),
        "DescribeAigcFaceInfoAsyncCompleteEvent",
        (("DescribeAigcFaceInfoAsync",), "DescribeAigcFaceInfoAsyncTask"),
        outputs=("Output.FaceInfoSet",),
    ),
    TaskSpec(
        "aigc_hunyuan_3d",
        ("AigcHunyuan3DTaskComplete", "AigcHunyuan3DComplete"),
        "AigcHunyuan3DCompleteEvent",
        (("AigcHunyuan3DTask",), "AigcHunyuan3DTask"),
        outputs=("Output.FileInfos",),
    ),
)
BY_EVENT = {event: spec for spec in SPECS for event in spec.events}
BY_KEY = {spec.key: spec for spec in SPECS}
BY_DETAIL_TYPE = {t: spec for spec in SPECS for t in spec.detail[0]}
KINDS = frozenset(spec.kind for spec in SPECS)
POLLED_KINDS = frozenset(spec.kind for spec in SPECS if spec.detail[0])


def spec_of(event_type: str, doc: dict) -> TaskSpec | None:
    """Return the row of an event: by its type, else by the event object it carries."""
    spec = BY_EVENT.get(event_type)
    if spec is not None:
        return spec
    return next((BY_KEY[k] for k, v in doc.items() if k in BY_KEY and isinstance(v, dict)), None)


def read(spec: TaskSpec, task: object) -> dict:
    """Read one task object with its row: kind, ids, state, error and outputs."""
    if not isinstance(task, dict):
        raise InvalidPayload(f"{spec.key} is missing or not an object")
    if spec.flow:
        return v3_flow(task, spec.kind)
    task_id = text(task.get("TaskId"))
    if task_id is None:
        raise InvalidPayload(f"{spec.key} without a TaskId")
    parts = []
    for where in spec.parts:
        found = path(task, where)
        parts.extend(found if isinstance(found, list) else [found])
    media = next((text(path(task, f)) for f in spec.files if text(path(task, f))), None)
    return {
        "kind": spec.kind,
        "provider_job_id": task_id,
        "media_id": media,
        "outputs": outputs(path(task, o) for o in spec.outputs),
        "occurred_at": parse_time(task.get("FinishTime")),
        **settle(task, parts),
    }
