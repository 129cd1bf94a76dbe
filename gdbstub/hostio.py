"""gdb's host I/O (``vFile:`` packets), read-only, over files that come from the trace.

gdb opens the executable, and for a Linux program the dynamic linker and every shared
library, by path through these packets (its default sysroot is ``target:``), so a gdb
on another machine needs nothing installed. ``HostFiles`` answers them from a resolver,
a function from a path to the file's bytes (None: no such file); it never opens a host
file. Replies use the protocol's errno values (which are the usual Linux ones for these).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from gdbstub.protocol import MAX_PACKET, escape

ENOENT, EBADF, EACCES, EINVAL = 2, 9, 13, 22
_O_ACCMODE = 3
_S_IFREG_READONLY = 0o100444
_MAX_FDS = 64


def _error(errno: int) -> str:
    return f"F-1,{errno:x}"


class HostFiles:
    """One gdb connection's host-I/O file table.

    Args:
        resolve: path → the file's bytes, or None when the trace has no such file.
        readlink: path → the link's target, or None (then ``ENOENT``).
        mtime: the modification time reported by ``fstat`` for every file.
    """

    def __init__(self, resolve: Callable[[str], bytes | None],
                 readlink: Callable[[str], str | None] | None = None, mtime: int = 0) -> None:
        self._resolve = resolve
        self._readlink = readlink or (lambda _path: None)
        self._mtime = mtime
        self._open: dict[int, tuple[int, bytes]] = {}    # fd -> (inode, content)
        self._inodes: dict[str, int] = {}

    def handle(self, args: str) -> str | bytes:
        """The reply to ``vFile:OP:ARGS`` (``args`` is what follows ``vFile:``)."""
        op, _, rest = args.partition(":")
        handler = {"setfs": self._setfs, "open": self._open_file, "pread": self._pread,
                   "close": self._close, "fstat": self._fstat, "readlink": self._readlink_file,
                   "unlink": self._refuse, "pwrite": self._refuse}.get(op)
        return handler(rest) if handler else ""

    def _setfs(self, _pid: str) -> str:
        return "F0"                          # one filesystem: the trace's

    def _refuse(self, _args: str) -> str:
        return _error(EACCES)                # a trace cannot change

    def _open_file(self, args: str) -> str:
        path_hex, flags, _mode = args.split(",")
        path = bytes.fromhex(path_hex).decode("utf-8", "surrogateescape")
        data = self._resolve(path)
        if data is None:
            return _error(ENOENT)
        if int(flags, 16) & _O_ACCMODE:      # not O_RDONLY
            return _error(EACCES)
        if len(self._open) >= _MAX_FDS:
            return _error(EINVAL)
        fd = max(self._open, default=2) + 1
        inode = self._inodes.setdefault(path, len(self._inodes) + 1)
        self._open[fd] = (inode, data)
        return f"F{fd:x}"

    def _pread(self, args: str) -> str | bytes:
        fd, count, offset = (int(x, 16) for x in args.split(","))
        if fd not in self._open:
            return _error(EBADF)
        data = self._open[fd][1]
        chunk = data[offset:offset + min(count, MAX_PACKET // 2)]
        return f"F{len(chunk):x};".encode() + escape(chunk)

    def _close(self, args: str) -> str:
        return "F0" if self._open.pop(int(args, 16), None) is not None else _error(EBADF)

    def _fstat(self, args: str) -> str | bytes:
        entry = self._open.get(int(args, 16))
        if entry is None:
            return _error(EBADF)
        inode, data = entry
        # gdb's struct stat: big-endian dev, ino, mode, nlink, uid, gid, rdev (u32),
        # size, blksize, blocks (u64), atime, mtime, ctime (u32).
        mtime = self._mtime & 0xFFFFFFFF
        stat = struct.pack(">7I3Q3I", 0, inode, _S_IFREG_READONLY, 1, 0, 0, 0, len(data), 4096,
                           (len(data) + 511) // 512, mtime, mtime, mtime)
        return f"F{len(stat):x};".encode() + escape(stat)

    def _readlink_file(self, args: str) -> str | bytes:
        path = bytes.fromhex(args).decode("utf-8", "surrogateescape")
        target = self._readlink(path)
        if target is None:
            return _error(ENOENT)
        raw = target.encode("utf-8", "surrogateescape")
        return f"F{len(raw):x};".encode() + escape(raw)
