"""Build Tencent VOD API 3.0 task objects from the official SDK's field lists.

Each model class of `tencentcloud.vod.v20180717.models` documents its fields and their
types in its constructor docstring (`:type TaskId: str`, `:type FileInfoSet: list of
ConcatFileInfo2017`...). `sample("EditMediaTask")` fills every documented field with a
plausible value of a finished, successful task, so the tests follow the SDK rather than a
guess at what each event holds.
"""

import re

from tencentcloud.vod.v20180717 import models

_TYPE = re.compile(r":type (\w+): (.+)")
_CLASS = re.compile(r":class:`tencentcloud\.vod\.v20180717\.models\.(\w+)`")
MAX_DEPTH = 3


def fields(class_name: str) -> dict[str, str]:
    """Return {field: type text} of an SDK model class, in the SDK's order."""
    return dict(_TYPE.findall(getattr(models, class_name).__init__.__doc__ or ""))


def _value(name: str, kind: str, depth: int, nested: bool):
    nested_class = _CLASS.fullmatch(kind.strip())
    if nested_class:
        return sample(nested_class.group(1), depth + 1, nested=True) if depth < MAX_DEPTH else None
    if kind.startswith("list of "):
        item = kind[len("list of ") :].strip()
        if item in ("str", "int", "float", "bool"):
            return [_value(name, item, depth, nested)]
        return [sample(item, depth + 1, nested=True)] if depth < MAX_DEPTH else []
    if name == "ErrCode":
        return 0 if kind == "int" else "0"
    if kind == "int":
        return 1
    if kind == "float":
        return 1.5
    if kind == "bool":
        return False
    if name == "Status":
        return "SUCCESS" if nested else "FINISH"
    if name in ("ErrCodeExt", "Message"):
        return ""
    if name == "TaskId":
        return "1256768367-task-0001"
    if name.endswith("FileId"):
        return "5285890784246869930"
    if name.endswith(("Url", "Urls", "UrlSet")) or name == "Url":
        return "http://1256768367.vod2.myqcloud.com/xxx/f0.mp4"
    if name.endswith("Time"):
        return "2026-11-20T01:02:03Z"
    return "x"


def sample(class_name: str, depth: int = 0, nested: bool = False) -> dict:
    """Return a finished, successful instance of an SDK model, as the wire JSON."""
    return {name: _value(name, kind, depth, nested) for name, kind in fields(class_name).items()}


def event_classes() -> dict[str, str]:
    """Return {event object key: SDK class} of `EventContent`."""
    found = {}
    for name, kind in fields("EventContent").items():
        match = _CLASS.fullmatch(kind.strip())
        if match:
            found[name] = match.group(1)
    return found


def detail_classes() -> dict[str, str]:
    """Return {task object key: SDK class} of `DescribeTaskDetailResponse`."""
    found = {}
    for name, kind in fields("DescribeTaskDetailResponse").items():
        match = _CLASS.fullmatch(kind.strip())
        if match:
            found[name] = match.group(1)
    return found
