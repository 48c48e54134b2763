"""The API 3.0 task table: which event and which status answer report on which task.

One row per task type, from the official SDK's models (`EventContent` names the event
object of each event type, `DescribeTaskDetailResponse` the task object of each task type):

- `events`: the `EventType` values of the event (where the SDK and the documentation
  spell an event differently, both); empty for tasks only DescribeTaskDetail reports;
- `key`: the event object's key in the event (`TranscodeCompleteEvent`...);
- `detail`: DescribeTaskDetail's `TaskType` values and the answer's key for the object;
- `files`: where the media's FileId is, first found wins;
- `outputs`: where the results are (an object, or a list of objects or URLs);
- `parts`: nested elements that report their own status or error code;
- `flow`: a task flow, one status per subtask (read by `tencent_procedure`).
"""

from dataclasses import dataclass


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
    flow: bool = False


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

# Tasks that only DescribeTaskDetail reports (no callback names them): kind, TaskType, key.
_DETAIL_ONLY = (
    ("import_media_knowledge", "ImportMediaKnowledge", "ImportMediaKnowledge"),
    ("scene_aigc_video", "SceneAigcVideoTask", "SceneAigcVideoTask"),
    ("aigc_video_redraw", "AigcVideoRedrawTask", "AigcVideoRedrawTask"),
    ("aigc_audio", "AigcAudioTask", "AigcAudioTask"),
    ("aigc_audio_clone", "CreateAigcAudioClone", "CreateAigcAudioCloneTask"),
    ("aigc_subject", "CreateAigcSubject", "CreateAigcSubjectTask"),
    ("design_voice", "DesignVoiceAsync", "DesignVoiceAsyncTask"),
    ("clone_voice", "CloneVoiceAsync", "CloneVoiceAsyncTask"),
    ("text_to_speech", "TextToSpeechAsync", "TextToSpeechAsyncTask"),
    ("video_dubbing", "VideoDubbingAsync", "VideoDubbingAsyncTask"),
    ("video_depth_estimation", "VideoDepthEstimation", "VideoDepthEstimationTask"),
    ("process_image", "ProcessImageAsync", "ProcessImageAsyncTask"),
)
SPECS += tuple(
    TaskSpec(kind, (), "", ((t,), key), files=("FileId", "Input.FileId"))
    for kind, t, key in _DETAIL_ONLY
)
