"""The code blocks of a document, for tests that run a document's commands as written."""

import re
from pathlib import Path

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def section(path: Path, heading: str) -> str:
    """Return the text under a Markdown heading, up to the next heading of its level or above.

    Lines inside fenced blocks are never headings (a shell comment starts with `#` too).
    """
    level = len(heading) - len(heading.lstrip("#"))
    lines, out, inside, fenced = path.read_text().splitlines(), [], False, False
    for line in lines:
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#+ ", line):
            if inside and len(line) - len(line.lstrip("#")) <= level:
                break
            if line == heading:
                inside = True
                continue
        if inside:
            out.append(line)
    assert inside, f"{path.name} has no heading {heading!r}"
    return "\n".join(out) + "\n"


def code_blocks(path: Path, heading: str, language: str = "sh") -> list[str]:
    """Return the fenced blocks of `language` under a heading, in order."""
    return [m[2] for m in _FENCE.finditer(section(path, heading)) if m[1] == language]


def edited(block: str, edits: dict[str, str]) -> str:
    """Apply the few edits a test must make (a host, a port), each to exactly one place."""
    for old, new in edits.items():
        assert block.count(old) == 1, f"the documented commands no longer have one {old!r}"
        block = block.replace(old, new)
    return block
