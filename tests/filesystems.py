"""Small file systems that fill up for real: a tmpfs mounted for one test, grown on demand.

Mounting needs root (CI runs as root on a fresh Debian machine). Where it is not permitted
the test is skipped, saying why, except under CI (`CI=true`), where it fails.
"""

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest


def _mount_or_give_up(*command: str) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20)
        problem = done.stderr.strip() if done.returncode != 0 else None
    except (OSError, subprocess.TimeoutExpired) as e:
        problem = str(e)
    if problem is None:
        return
    message = f"cannot mount a tmpfs here ({' '.join(command)}): {problem}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


class SmallFS:
    """A tmpfs of a given size at `path`; `grow()` gives it more room without unmounting."""

    def __init__(self, path: Path, size: str, owner: str | None = None):
        self.path = path
        options = f"size={size},mode=0755"
        _mount_or_give_up("mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path))
        if owner is not None:
            user = pwd.getpwnam(owner)
            os.chown(path, user.pw_uid, user.pw_gid)

    def grow(self, size: str) -> None:
        """Give the file system `size` in all (`mount -o remount,size=...`)."""
        subprocess.run(
            ["mount", "-o", f"remount,size={size}", str(self.path)],
            check=True,
            capture_output=True,
            timeout=20,
        )

    def free(self) -> int:
        """Bytes still free."""
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def unmount(self) -> None:
        # Lazy: detaches now, frees the memory once every process has closed its files.
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True, timeout=20)


@pytest.fixture
def small_fs():
    """Mount small file systems for one test: `small_fs("2m", owner="postgres")`.

    Each is mounted on a directory of its own that any user can reach (a server running
    as `postgres` keeps a tablespace there), and unmounted when the test ends.
    """
    mounted: list[SmallFS] = []
    root = Path(tempfile.mkdtemp(prefix="jobledger-fs-"))
    root.chmod(0o755)

    def mount(size: str, owner: str | None = None) -> SmallFS:
        path = root / f"fs{len(mounted)}"
        path.mkdir()
        fs = SmallFS(path, size, owner)
        mounted.append(fs)
        return fs

    yield mount
    for fs in mounted:
        fs.unmount()
    shutil.rmtree(root, ignore_errors=True)
