"""Creating files next to files vmrr reads, safely.

A trace is often opened where others can write: a shared /tmp, a folder of bug-report
attachments. Anyone who can write there can plant a symbolic link at a name vmrr will
write (``TRACE.idx``, ``TRACE.incomplete``, a console log) and have the victim's vmrr
overwrite any file the victim can write. So every file vmrr writes is created fresh:
``O_CREAT | O_EXCL | O_NOFOLLOW`` (or a new temporary file in the same directory,
renamed into place), and a symbolic link already at a destination is refused, not
followed and not replaced.
"""

from __future__ import annotations

import os
import stat
import tempfile

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class SymlinkRefused(OSError):
    """A symbolic link stands where vmrr was to write a file."""

    def __init__(self, path: str) -> None:
        super().__init__(f"{path}: is a symbolic link; vmrr does not write through links")
        self.path = path


def refuse_symlink(path: str) -> None:
    """Raise SymlinkRefused if ``path`` itself is a symbolic link (dangling or not)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        raise SymlinkRefused(path)


def create_new(path: str, mode: int = 0o600) -> int:
    """A new file at ``path`` (it must not exist, not even as a link): its descriptor.

    Raises:
        FileExistsError: something is already at ``path`` (a link included).
        OSError: it cannot be created.
    """
    return os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | NOFOLLOW | CLOEXEC, mode)


def open_append(path: str, mode: int = 0o600) -> int:
    """``path`` opened for appending (created if missing), never through a symbolic link.

    Raises:
        SymlinkRefused: ``path`` is a symbolic link.
        OSError: it cannot be opened.
    """
    try:
        return os.open(path, os.O_CREAT | os.O_APPEND | os.O_WRONLY | NOFOLLOW | CLOEXEC, mode)
    except OSError:
        refuse_symlink(path)
        raise


def replace_atomically(path: str, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to a new temporary file beside ``path``, then rename it over ``path``:
    readers see the old content or the new, never a part, and nothing is written through
    a link planted at either name.

    Raises:
        SymlinkRefused: ``path`` is a symbolic link.
        OSError: it cannot be written.
    """
    refuse_symlink(path)
    directory, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        refuse_symlink(path)                     # planted while we wrote
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
