"""Files: the descriptor table and the file system calls.

An open file is one of a few kinds:

- ``blob``: a regular file opened read-only. The host's bytes are captured whole when
  it is opened (a BLOB in the trace, content-addressed, so a library read twice is
  stored once); reads, preads and mmaps are then deterministic and logged as nothing.
- ``host``: anything else on the host (a file opened for writing, a terminal). Every
  operation is performed on the host while recording and its answer logged.
- ``dir``: a directory; its entries are captured when it is opened.
- ``synth``: content the personality makes up as Linux would (/proc, /sys).
- ``null``, ``zero``, ``random``: the devices; /dev/urandom reads host entropy.
- ``pipe``: both ends inside the program.
- ``socket``: a host socket (vmm/linux/net.py); ``epoll``, ``eventfd``: vmm/linux/poll.py.
- ``stdout``/``stderr``: the program's output streams (deterministic: digested, shown).

Paths are resolved against the personality's own cwd; the VMM process never chdirs.
"""

from __future__ import annotations

import posixpath
import struct
from typing import TYPE_CHECKING

from vmm.linux import abi, procfs
from vmm.linux.abi import (AT_EMPTY_PATH, AT_FDCWD, AT_REMOVEDIR, AT_SYMLINK_NOFOLLOW, EBADF, EFAULT,
                           EINVAL, EISDIR, EMFILE, ENOENT, ENOTDIR, ENOTTY, ESPIPE, O_ACCMODE, O_APPEND,
                           O_CLOEXEC, O_CREAT, O_NONBLOCK, O_TRUNC, S_IFDIR, S_IFIFO)

from vmm.linux.tasks import Blocked

if TYPE_CHECKING:
    from vmm.linux.kernel import LinuxKernel

MAX_IO = 1 << 24                   # bytes one read/write moves at most (Linux: 0x7ffff000)
PIPE_BUF = 65536
F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL, F_GETLK, F_SETLK, F_SETLKW = 0, 1, 2, 3, 4, 5, 6, 7
F_DUPFD_CLOEXEC, F_GETPIPE_SZ = 1030, 1032
TCGETS, TIOCGWINSZ, FIONBIO, FIOCLEX, FIONCLEX, TIOCGPGRP = 0x5401, 0x5413, 0x5421, 0x5451, 0x5450, 0x540F
FIOASYNC, FIONREAD = 0x5452, 0x541B
O_ASYNC = 0o20000
F_SETOWN, F_GETOWN = 8, 9
DT_DIR, DT_REG = 4, 8


def s32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def s64(value: int) -> int:
    return value - (1 << 64) if value & (1 << 63) else value


class OpenFile:
    """An open file description (shared by dup'ed descriptors)."""

    __slots__ = ("kind", "path", "flags", "pos", "ref", "stat", "data", "handle", "pipe")

    def __init__(self, kind: str, path: str, flags: int, *, stat: list | None = None,
                 data=None, handle: int | None = None, pipe: int | None = None) -> None:
        self.kind = kind
        self.path = path
        self.flags = flags
        self.pos = 0
        self.ref = 0
        self.stat = stat
        self.data = data          # blob: content id; synth: bytes; dir: entries
        self.handle = handle      # host: the host side's handle number
        self.pipe = pipe          # pipe: the pipe number (read end if flags say so)

    def as_list(self) -> list:
        return [self.kind, self.path, self.flags, self.pos, self.ref, self.stat, self.data,
                self.handle, self.pipe]

    @classmethod
    def from_list(cls, raw: list) -> "OpenFile":
        kind, path, flags, pos, ref, stat, data, handle, pipe = raw
        f = cls(kind, path, flags, stat=stat, data=data, handle=handle, pipe=pipe)
        f.pos, f.ref = pos, ref
        return f


class FileTable:
    """A process's descriptors. The open file descriptions they name are shared with
    every other descriptor (of this process or another, after a fork) that names them;
    pipes are the kernel's."""

    def __init__(self, kernel: LinuxKernel, process=None) -> None:
        self.k = kernel
        self.process = process
        self.fds: dict[int, list] = {}          # fd -> [OpenFile, cloexec]
        self.version = 0                        # bumped whenever a descriptor comes or goes

    def open_stdio(self) -> None:
        self.install(OpenFile("host", "/dev/stdin", 0, handle=0), 0)
        self.install(OpenFile("stdout", "/dev/stdout", 1), 1)
        self.install(OpenFile("stderr", "/dev/stderr", 1), 2)

    def install(self, f: OpenFile, at: int | None = None, cloexec: bool = False, lowest: int = 0) -> int:
        if at is None:
            at = lowest
            while at in self.fds:
                at += 1
            if at >= self.limit:
                return -EMFILE
        elif at in self.fds:
            self.close(at)
        f.ref += 1
        self.fds[at] = [f, cloexec]
        self.version += 1
        return at

    @property
    def limit(self) -> int:
        """One past the highest descriptor a new file may get: RLIMIT_NOFILE's soft limit."""
        return min(self.process.rlimits[abi.RLIMIT_NOFILE][0], abi.MAX_FDS)

    def get(self, fd: int) -> OpenFile | None:
        entry = self.fds.get(s32(fd))
        return None if entry is None else entry[0]

    def close(self, fd: int) -> int:
        entry = self.fds.pop(s32(fd), None)
        self.version += 1
        if entry is None:
            return -EBADF
        self.drop(entry[0])
        return 0

    def drop(self, f: OpenFile) -> None:
        """One reference to ``f`` less (a descriptor closed, a passed descriptor dropped);
        the last one releases it."""
        f.ref -= 1
        if f.ref == 0:
            if f.kind == "socket":
                _domain, _kind, _connecting, peer, inbox = f.data
                if peer is not None and peer.data[3] is f:
                    peer.data[3] = None
                f.data[3], f.data[4] = None, []
                for message in inbox:               # sent to it, never received: closed
                    for passed in message:
                        self.drop(passed)
            if f.kind in ("host", "socket", "epoll") and f.handle:
                if self.k.in_syscall:
                    self.k.host("close", f.handle)
                else:
                    self.k.boundary.release(f.handle)
            elif f.kind == "pipe":
                if not any(o.kind == "pipe" and o.pipe == f.pipe for o in self.k.open_files()):
                    self.k.pipes.pop(f.pipe, None)
                from vmm.linux.poll import wake
                # the other end sees EOF or EPIPE now
                wake(self.k, lambda o, pipe=f.pipe: o.kind == "pipe" and o.pipe == pipe)
            from vmm.linux.poll import forget_file
            forget_file(self.k, f)

    # -- state -----------------------------------------------------------------------

    def state(self, description_index: dict[int, int]) -> list:
        """[[fd, index of its description in the kernel's list, cloexec], ...]"""
        return [[fd, description_index[id(self.fds[fd][0])], self.fds[fd][1]] for fd in sorted(self.fds)]

    def load_state(self, table: list, descriptions: list[OpenFile]) -> None:
        self.fds = {fd: [descriptions[i], bool(cloexec)] for fd, i, cloexec in table}
        self.version += 1

    # -- paths -----------------------------------------------------------------------

    def resolve(self, dirfd: int, path: str) -> str | int:
        """An absolute path for ``path`` relative to ``dirfd`` (or -errno)."""
        if path.startswith("/"):
            return posixpath.normpath(path) if path != "//" else "/"
        dirfd = s32(dirfd)
        if dirfd == AT_FDCWD:
            base = self.k.cwd
        else:
            f = self.get(dirfd)
            if f is None:
                return -EBADF
            if f.kind != "dir":
                return -ENOTDIR
            base = f.path
        return posixpath.normpath(posixpath.join(base, path)) if path else base


# -- helpers -------------------------------------------------------------------------

def _stat_of(k: LinuxKernel, path: str, follow: bool = True):
    synth = procfs.stat(k, path, follow)
    if synth is not None:
        return synth
    return k.host("stat", path, follow)


def _open(k: LinuxKernel, dirfd: int, path: str | None, flags: int, mode: int) -> int:
    if path is None:
        return -EFAULT
    full = k.files.resolve(dirfd, path)
    if isinstance(full, int):
        return full
    if not path:
        return -ENOENT
    cloexec = bool(flags & O_CLOEXEC)
    target = procfs.fd_target(k, full)
    if target is not None:                     # /dev/fd/N: the file descriptor N has open
        f = k.files.get(target)
        if f is None:
            return -ENOENT
        if f.kind in ("blob", "host", "dir"):
            full = f.path                      # a new description of the same file
        elif f.kind in ("pipe", "stdout", "stderr", "null", "zero", "random"):
            return k.files.install(OpenFile(f.kind, f.path, flags & ~O_CLOEXEC, stat=f.stat, data=f.data,
                                            pipe=f.pipe), cloexec=cloexec)
        else:
            return -abi.ENXIO                  # a socket, an epoll, an eventfd (as Linux)
    special = procfs.open(k, full, flags)
    if special is not None:
        if isinstance(special, int):
            return special
        return k.files.install(special, cloexec=cloexec)
    answer = k.host("open", full, flags & ~O_CLOEXEC, mode & ~k.umask & 0o7777)
    if isinstance(answer, int):
        return answer
    kind = answer[0]
    if kind == "blob":
        _, file_id, stat = answer
        f = OpenFile("blob", full, flags, stat=stat, data=file_id)
        k.files_read.setdefault(full, [file_id, stat[7]])
    elif kind == "dir":
        _, stat, entries = answer
        f = OpenFile("dir", full, flags, stat=stat, data=entries)
    else:
        _, handle, stat = answer
        f = OpenFile("host", full, flags, stat=stat, handle=handle)
    return k.files.install(f, cloexec=cloexec)


def _file(k: LinuxKernel, fd: int) -> OpenFile | int:
    f = k.files.get(fd)
    return -EBADF if f is None else f


def _readable(f: OpenFile) -> bool:
    return (f.flags & O_ACCMODE) != abi.O_WRONLY


def _writable(f: OpenFile) -> bool:
    return (f.flags & O_ACCMODE) != 0 or f.kind in ("stdout", "stderr")


def pipe_ends(k: LinuxKernel, pipe: int) -> tuple[bool, bool]:
    """Whether pipe ``pipe`` has a read end and a write end open."""
    ends = [f for f in k.open_files() if f.kind == "pipe" and f.pipe == pipe]
    return any(not _writable(f) for f in ends), any(_writable(f) for f in ends)


def read_from(k: LinuxKernel, f: OpenFile, count: int, offset: int | None = None, fd: int = -1) -> bytes | int:
    """Up to ``count`` bytes from ``f`` (at ``offset``, or its position), or -errno."""
    count = min(count, MAX_IO)
    if not _readable(f):
        return -EBADF
    kind = f.kind
    if kind == "socket":
        from vmm.linux.net import recv
        return recv(k, f, fd, count, 0)
    if kind == "eventfd":
        from vmm.linux.poll import eventfd_read
        return eventfd_read(k, f, fd, count)
    pos = f.pos if offset is None else offset
    if kind == "blob":
        data = k.file_content(f.data)[pos:pos + count]
    elif kind == "synth":
        data = f.data[pos:pos + count]
    elif kind == "dir":
        return -EISDIR
    elif kind in ("null",):
        data = b""
    elif kind == "zero":
        data = bytes(count)
    elif kind == "random":
        return k.host("random", count)
    elif kind == "pipe":
        if offset is not None:
            return -ESPIPE
        buf = k.pipes.get(f.pipe, bytearray())
        if not buf:
            if not pipe_ends(k, f.pipe)[1]:
                return b""
            if f.flags & O_NONBLOCK or len(k.tasks) < 2:     # alone, nobody could ever write it
                return -abi.EAGAIN
            raise Blocked(["fds", [[s32(fd), 1]]])
        data = bytes(buf[:count])
        del buf[:count]
        _wake_pipe(k, f.pipe, reader=False)
        return data
    elif kind == "host":
        data = k.host("read", f.handle, count) if offset is None else k.host("pread", f.handle, count, offset)
        if isinstance(data, int):
            return data
        if len(data) > count:
            raise ValueError("more bytes than asked for")
        return data
    else:
        return -EBADF
    if offset is None:
        f.pos += len(data)
    return data


def write_to(k: LinuxKernel, f: OpenFile, data: bytes, offset: int | None = None, fd: int = -1) -> int:
    if not _writable(f):
        return -EBADF
    kind = f.kind
    if kind == "socket":
        from vmm.linux.net import send
        return send(k, f, fd, data, 0)
    if kind == "eventfd":
        from vmm.linux.poll import eventfd_write
        return eventfd_write(k, f, fd, data)
    if kind in ("stdout", "stderr"):
        k.machine.output(kind, data)
        return len(data)
    if kind in ("null", "zero", "random"):
        return len(data)
    if kind == "pipe":
        if not any(o.kind == "pipe" and o.pipe == f.pipe and not _writable(o) for o in k.open_files()):
            k.signals.raise_signal(abi.SIGPIPE, abi.SI_USER, 0)       # no reader left: EPIPE and SIGPIPE
            return -abi.EPIPE
        buffer = k.pipes.setdefault(f.pipe, bytearray())
        if f.flags & O_NONBLOCK or len(k.tasks) > 1:
            # Linux's pipe holds PIPE_BUF bytes; writes of up to 4096 bytes are all or nothing.
            room = PIPE_BUF - len(buffer)
            if room <= 0 or (len(data) <= 4096 and room < len(data)):
                if f.flags & O_NONBLOCK:
                    return -abi.EAGAIN
                raise Blocked(["fds", [[s32(fd), 4]]])
            data = data[:room]
        buffer.extend(data)
        _wake_pipe(k, f.pipe, reader=True)
        return len(data)
    if kind == "host":
        if offset is None:
            written = k.host("write", f.handle, data)
        else:
            written = k.host("pwrite", f.handle, data, offset)
        _refresh_readers(k, f.path)
        if type(written) is int and written > 0 and f.stat is not None and k.shm.maps_file(file_key(f)):
            # Shared mappings of the file see the bytes, as the page cache would show them.
            if offset is None:
                offset = k.host("lseek", f.handle, 0, 1) - written
            k.shm.written(file_key(f), offset, data[:written])
        return written
    return -EBADF


def file_key(f: OpenFile) -> str:
    """A host file's identity, as shared mappings of it are keyed (vmm/linux/shmem.py)."""
    return f"{f.stat[0]}:{f.stat[1]}"


def _wake_pipe(k: LinuxKernel, pipe: int, *, reader: bool) -> None:
    """Bytes went into (``reader``: wake its read ends) or out of a pipe (its write ends)."""
    from vmm.linux.poll import POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM, wake
    if reader:
        wake(k, lambda o: o.kind == "pipe" and o.pipe == pipe and not _writable(o), POLLIN | POLLRDNORM)
    else:
        wake(k, lambda o: o.kind == "pipe" and o.pipe == pipe and _writable(o), POLLOUT | POLLWRNORM)


def _refresh_readers(k: LinuxKernel, path: str) -> None:
    """The program changed ``path`` through a writable descriptor: descriptors reading it from
    the content captured at their open see the new content, as on Linux. Deterministic (only
    the program's own descriptors decide it); the new content is one more host answer."""
    readers = [f for f in k.open_files() if f.kind == "blob" and f.path == path]
    if not readers:
        return
    answer = k.host("open", path, 0, 0)
    if isinstance(answer, int) or answer[0] != "blob":
        return
    _, file_id, stat = answer
    for f in readers:
        f.data, f.stat = file_id, stat


def _iovecs(k: LinuxKernel, iov: int, count: int) -> list[tuple[int, int]] | int:
    count = s32(count)
    if not 0 <= count <= 1024:
        return -EINVAL
    raw = k.read(iov, 16 * count)
    return [struct.unpack_from("<QQ", raw, 16 * i) for i in range(count)]


# -- read and write ------------------------------------------------------------------

def sys_read(k, fd, buf, count):
    f = _file(k, fd)
    if isinstance(f, int):
        return f
    data = read_from(k, f, count, fd=fd)
    if isinstance(data, int):
        return data
    k.write(buf, data)
    return len(data)


def sys_pread64(k, fd, buf, count, offset):
    f = _file(k, fd)
    if isinstance(f, int):
        return f
    if f.kind in ("pipe", "stdout", "stderr"):
        return -ESPIPE
    data = read_from(k, f, count, s64(offset))
    if isinstance(data, int):
        return data
    k.write(buf, data)
    return len(data)


def sys_readv(k, fd, iov, iovcnt):
    return _readv(k, fd, iov, iovcnt, None)


def sys_preadv(k, fd, iov, iovcnt, offset):
    return _readv(k, fd, iov, iovcnt, s64(offset))


def _readv(k, fd, iov, iovcnt, offset):
    f = _file(k, fd)
    if isinstance(f, int):
        return f
    vecs = _iovecs(k, iov, iovcnt)
    if isinstance(vecs, int):
        return vecs
    if f.kind in ("socket", "pipe", "eventfd") and offset is None:   # one read, scattered
        data = read_from(k, f, sum(length for _base, length in vecs), fd=fd)
        if isinstance(data, int):
            return data
        from vmm.linux.net import scatter
        scatter(k, vecs, data)
        return len(data)
    total = 0
    for base, length in vecs:
        if not length:
            continue
        data = read_from(k, f, length, None if offset is None else offset + total)
        if isinstance(data, int):
            return data if total == 0 else total
        k.write(base, data)
        total += len(data)
        if len(data) < length:
            break
    return total


def sys_write(k, fd, buf, count):
    f = _file(k, fd)
    if isinstance(f, int):
        return f
    return write_to(k, f, k.read(buf, min(count, MAX_IO)), fd=fd)


def sys_pwrite64(k, fd, buf, count, offset):
    f = _file(k, fd)
    if isinstance(f, int):
        return f
    return write_to(k, f, k.read(buf, min(count, MAX_IO)), s64(offset))


def sys_writev(k, fd, iov, iovcnt):
    return _writev(k, fd, iov, iovcnt, None)


def sys_pwritev(k, fd, iov, iovcnt, offset):
    return _writev(k, fd, iov, iovcnt, s64(offset))


def _writev(k, fd, iov, iovcnt, offset):
    f = _file(k, fd)
    if isinstance(f, int):
        return f
    vecs = _iovecs(k, iov, iovcnt)
    if isinstance(vecs, int):
        return vecs
    data = b"".join(k.read(base, length) for base, length in vecs if length)
    return write_to(k, f, data, offset, fd=fd)


def sys_lseek(k, fd, offset, whence):
    f = _file(k, fd)
    if isinstance(f, int):
        return f
    offset, whence = s64(offset), s32(whence)
    if f.kind in ("pipe", "stdout", "stderr", "socket", "epoll", "eventfd"):
        return -ESPIPE
    if f.kind == "host":
        return k.host("lseek", f.handle, offset, whence)
    if f.kind == "dir":
        if whence != 0 or offset < 0:
            return -EINVAL
        f.pos = offset
        return offset
    size = {"blob": lambda: len(k.file_content(f.data)), "synth": lambda: len(f.data)}.get(f.kind, lambda: 0)()
    new = {0: offset, 1: f.pos + offset, 2: size + offset}.get(whence)
    if new is None or new < 0:
        return -EINVAL
    f.pos = new
    return new


# -- open, close, descriptors ----------------------------------------------------------

def sys_open(k, path, flags, mode):
    return _open(k, AT_FDCWD, _path(k, path), flags, mode)


def sys_creat(k, path, mode):
    """creat(2) is open(O_CREAT|O_WRONLY|O_TRUNC): glibc's creat() and GNU tar call it."""
    return _open(k, AT_FDCWD, _path(k, path), abi.O_WRONLY | O_CREAT | O_TRUNC, mode)


def sys_openat(k, dirfd, path, flags, mode):
    return _open(k, dirfd, _path(k, path), flags, mode)


def _path(k, va: int) -> str | None:
    try:
        return k.read_path(va)
    except Exception:
        return None


def sys_close(k, fd):
    return k.files.close(fd)


def sys_close_range(k, first, last, flags):
    first, last = first & 0xFFFFFFFF, last & 0xFFFFFFFF
    for fd in [fd for fd in k.files.fds if first <= fd <= last]:
        if flags & 4:                             # CLOSE_RANGE_CLOEXEC
            k.files.fds[fd][1] = True
        else:
            k.files.close(fd)
    return 0


def sys_dup(k, fd):
    f = _file(k, fd)
    return f if isinstance(f, int) else k.files.install(f)


def sys_dup2(k, old, new):
    f = _file(k, old)
    if isinstance(f, int):
        return f
    if s32(old) == s32(new):
        return s32(new)
    if not 0 <= s32(new) < k.files.limit:
        return -EBADF
    return k.files.install(f, s32(new))


def sys_dup3(k, old, new, flags):
    if s32(old) == s32(new) or flags & ~O_CLOEXEC:
        return -EINVAL
    f = _file(k, old)
    if isinstance(f, int):
        return f
    if not 0 <= s32(new) < k.files.limit:
        return -EBADF
    return k.files.install(f, s32(new), cloexec=bool(flags & O_CLOEXEC))


def sys_fcntl(k, fd, cmd, arg):
    f = _file(k, fd)
    if isinstance(f, int):
        return f
    cmd = s32(cmd)
    entry = k.files.fds[s32(fd)]
    if cmd in (F_DUPFD, F_DUPFD_CLOEXEC):
        return k.files.install(f, cloexec=cmd == F_DUPFD_CLOEXEC, lowest=arg & 0xFFFFFFFF)
    if cmd == F_GETFD:
        return 1 if entry[1] else 0
    if cmd == F_SETFD:
        entry[1] = bool(arg & 1)
        return 0
    if cmd == F_GETFL:
        return f.flags | (0o100000 if f.kind in ("blob", "host") else 0)     # O_LARGEFILE
    if cmd == F_SETFL:
        keep = ~(O_APPEND | O_NONBLOCK | O_ASYNC | 0o40000 | 0o1000000)
        f.flags = (f.flags & keep) | (arg & ~keep)
        return 0
    if cmd == F_SETOWN:              # O_ASYNC's owner: SIGIO is not sent (docs/linux.md)
        return 0
    if cmd == F_GETOWN:
        return 0
    if cmd in (F_GETLK, F_SETLK, F_SETLKW, 36, 37, 38):             # locks: one process holds them all
        return 0
    if cmd == F_GETPIPE_SZ and f.kind == "pipe":
        return PIPE_BUF
    return -EINVAL


def sys_flock(k, fd, op):
    f = _file(k, fd)
    return f if isinstance(f, int) else 0


def sys_fsync(k, fd):
    f = _file(k, fd)
    if isinstance(f, int):
        return f
    return k.host("fsync", f.handle) if f.kind == "host" else 0


def sys_ftruncate(k, fd, length):
    f = _file(k, fd)
    if isinstance(f, int):
        return f
    if f.kind != "host" or not _writable(f):
        return -EINVAL
    result = k.host("ftruncate", f.handle, s64(length))
    _refresh_readers(k, f.path)
    return result


def sys_fadvise64(k, fd, offset, length, advice):
    f = _file(k, fd)
    return f if isinstance(f, int) else (-ESPIPE if f.kind == "pipe" else 0)


def sys_fallocate(k, fd, mode, offset, length):
    f = _file(k, fd)
    return f if isinstance(f, int) else 0


def sys_pipe(k, fds):
    return sys_pipe2(k, fds, 0)


def sys_pipe2(k, fds, flags):
    if flags & ~(O_CLOEXEC | O_NONBLOCK | 0o40000):
        return -EINVAL
    number = k.next_pipe
    k.next_pipe += 1
    k.pipes[number] = bytearray()
    stat = [0, 0x10000 + number, S_IFIFO | 0o600, 1, 0, 0, 0, 0, 4096, 0, 0, 0, 0]
    cloexec = bool(flags & O_CLOEXEC)
    r = k.files.install(OpenFile("pipe", f"pipe:[{number}]", (flags & O_NONBLOCK), stat=stat, pipe=number),
                        cloexec=cloexec)
    w = k.files.install(OpenFile("pipe", f"pipe:[{number}]", abi.O_WRONLY | (flags & O_NONBLOCK), stat=stat,
                                 pipe=number), cloexec=cloexec)
    if r < 0 or w < 0:
        return -EMFILE
    k.write(fds, struct.pack("<ii", r, w))
    return 0


# -- metadata ------------------------------------------------------------------------

def fstat_list(k, f: OpenFile):
    if f.kind == "host":
        return k.host("fstat", f.handle)
    if f.kind in ("stdout", "stderr"):
        return k.host("stdio_stat", 1 if f.kind == "stdout" else 2)
    return f.stat or procfs.SYNTH_STAT


def sys_fstat(k, fd, buf):
    f = _file(k, fd)
    if isinstance(f, int):
        return f
    st = fstat_list(k, f)
    if isinstance(st, int):
        return st
    k.write(buf, abi.pack_stat(st))
    return 0


def _stat_path(k, dirfd, path, flags):
    if path is None:
        return -EFAULT
    if not path:
        if not flags & AT_EMPTY_PATH:
            return -ENOENT
        f = _file(k, dirfd) if s32(dirfd) != AT_FDCWD else None
        if f is None:
            return _stat_of(k, k.cwd)
        return f if isinstance(f, int) else fstat_list(k, f)
    full = k.files.resolve(dirfd, path)
    if isinstance(full, int):
        return full
    return _stat_of(k, full, not flags & AT_SYMLINK_NOFOLLOW)


def sys_stat(k, path, buf):
    return _write_stat(k, _stat_path(k, AT_FDCWD, _path(k, path), 0), buf)


def sys_lstat(k, path, buf):
    return _write_stat(k, _stat_path(k, AT_FDCWD, _path(k, path), AT_SYMLINK_NOFOLLOW), buf)


def sys_newfstatat(k, dirfd, path, buf, flags):
    return _write_stat(k, _stat_path(k, dirfd, _path(k, path), flags), buf)


def _write_stat(k, st, buf) -> int:
    if isinstance(st, int):
        return st
    k.write(buf, abi.pack_stat(st))
    return 0


def sys_statx(k, dirfd, path, flags, mask, buf):
    st = _stat_path(k, dirfd, _path(k, path), flags)
    if isinstance(st, int):
        return st
    k.write(buf, abi.pack_statx(st, mask))
    return 0


def _access(k, dirfd, path, mode, flags):
    if path is None:
        return -EFAULT
    full = k.files.resolve(dirfd, path)
    if isinstance(full, int):
        return full
    synth = procfs.stat(k, full, True)
    if synth is not None:
        return synth if isinstance(synth, int) else 0
    return k.host("access", full, mode & 7)


def sys_access(k, path, mode):
    return _access(k, AT_FDCWD, _path(k, path), mode, 0)


def sys_faccessat(k, dirfd, path, mode):
    return _access(k, dirfd, _path(k, path), mode, 0)


def sys_faccessat2(k, dirfd, path, mode, flags):
    return _access(k, dirfd, _path(k, path), mode, flags)


def _readlink(k, dirfd, path, buf, size):
    if path is None:
        return -EFAULT
    size = s32(size)
    if size <= 0:
        return -EINVAL
    full = k.files.resolve(dirfd, path)
    if isinstance(full, int):
        return full
    target = procfs.readlink(k, full)
    if target is None:
        target = k.host("readlink", full)
    if isinstance(target, int):
        return target
    raw = target.encode("utf-8", "surrogateescape")[:size]
    k.write(buf, raw)
    return len(raw)


def sys_readlink(k, path, buf, size):
    return _readlink(k, AT_FDCWD, _path(k, path), buf, size)


def sys_readlinkat(k, dirfd, path, buf, size):
    return _readlink(k, dirfd, _path(k, path), buf, size)


def sys_getdents64(k, fd, buf, count):
    f = _file(k, fd)
    if isinstance(f, int):
        return f
    if f.kind != "dir":
        return -ENOTDIR
    out = bytearray()
    entries = f.data
    while f.pos < len(entries):
        ino, dtype, name = entries[f.pos]
        raw = name.encode("utf-8", "surrogateescape") + b"\0"
        reclen = (19 + len(raw) + 7) & ~7
        if len(out) + reclen > count:
            if not out:
                return -EINVAL
            break
        out += struct.pack("<QqHB", ino, f.pos + 1, reclen, dtype) + raw
        out += bytes(reclen - 19 - len(raw))
        f.pos += 1
    k.write(buf, bytes(out))
    return len(out)


def sys_ioctl(k, fd, request, arg):
    f = _file(k, fd)
    if isinstance(f, int):
        return f
    request &= 0xFFFFFFFF
    if request == FIOCLEX or request == FIONCLEX:
        k.files.fds[s32(fd)][1] = request == FIOCLEX
        return 0
    if request == FIONBIO or request == FIOASYNC:
        on = struct.unpack("<i", k.read(arg, 4))[0]
        bit = O_NONBLOCK if request == FIONBIO else O_ASYNC
        f.flags = (f.flags | bit) if on else (f.flags & ~bit)
        return 0
    if request == FIONREAD and f.kind == "pipe" and not f.flags & O_ACCMODE:
        k.write(arg, struct.pack("<i", len(k.pipes.get(f.pipe, b""))))
        return 0
    if request in (TCGETS, TIOCGWINSZ, TIOCGPGRP):
        handle = {"host": f.handle, "stdout": 1, "stderr": 2}.get(f.kind)
        if handle is None:
            return -ENOTTY
        answer = k.host("ioctl", handle, request)
        if isinstance(answer, int):
            return answer
        k.write(arg, answer)
        return 0
    return -ENOTTY


MFD_CLOEXEC, MFD_ALLOW_SEALING = 1, 2


def sys_memfd_create(k, name, flags):
    """An anonymous file in memory. It is a host file (one the host unlinks at once):
    reads, writes, ftruncate and a fork's MAP_SHARED mappings behave as Linux's."""
    if flags & ~(MFD_CLOEXEC | MFD_ALLOW_SEALING):
        return -abi.EINVAL
    label = k.space.read_cstr(name, 250).decode("utf-8", "surrogateescape")
    answer = k.host("memfd")
    if isinstance(answer, int):
        return answer
    _kind, handle, stat = answer
    f = OpenFile("host", f"/memfd:{label} (deleted)", abi.O_RDWR, stat=stat, handle=handle)
    return k.files.install(f, cloexec=bool(flags & MFD_CLOEXEC))


# -- the directory tree ----------------------------------------------------------------

def sys_getcwd(k, buf, size):
    raw = k.cwd.encode("utf-8", "surrogateescape") + b"\0"
    if len(raw) > size:
        return -abi.ERANGE
    k.write(buf, raw)
    return len(raw)


def sys_chdir(k, path):
    path = _path(k, path)
    if path is None:
        return -EFAULT
    full = k.files.resolve(AT_FDCWD, path)
    if isinstance(full, int):
        return full
    st = _stat_of(k, full)
    if isinstance(st, int):
        return st
    if st[2] & abi.S_IFMT != S_IFDIR:
        return -ENOTDIR
    k.cwd = full
    return 0


def sys_fchdir(k, fd):
    f = _file(k, fd)
    if isinstance(f, int):
        return f
    if f.kind != "dir":
        return -ENOTDIR
    k.cwd = f.path
    return 0


def _host_path_op(k, op: str, dirfd: int, va: int, *extra) -> int:
    path = _path(k, va)
    if path is None:
        return -EFAULT
    full = k.files.resolve(dirfd, path)
    if isinstance(full, int):
        return full
    if procfs.is_virtual(full):
        return -abi.EPERM
    return k.host(op, full, *extra)


def sys_unlink(k, path):
    return _host_path_op(k, "unlink", AT_FDCWD, path)


def sys_unlinkat(k, dirfd, path, flags):
    return _host_path_op(k, "rmdir" if flags & AT_REMOVEDIR else "unlink", dirfd, path)


def sys_rmdir(k, path):
    return _host_path_op(k, "rmdir", AT_FDCWD, path)


def sys_mkdir(k, path, mode):
    return _host_path_op(k, "mkdir", AT_FDCWD, path, mode & ~k.umask & 0o7777)


def sys_mkdirat(k, dirfd, path, mode):
    return _host_path_op(k, "mkdir", dirfd, path, mode & ~k.umask & 0o7777)


def sys_chmod(k, path, mode):
    return _host_path_op(k, "chmod", AT_FDCWD, path, mode & 0o7777)


def sys_fchmodat(k, dirfd, path, mode):
    return _host_path_op(k, "chmod", dirfd, path, mode & 0o7777)


def sys_fchmod(k, fd, mode):
    f = _file(k, fd)
    if isinstance(f, int):
        return f
    return k.host("fchmod", f.handle, mode & 0o7777) if f.kind == "host" else 0


def sys_chown(k, path, uid, gid):
    return 0


def sys_fchown(k, fd, uid, gid):
    f = _file(k, fd)
    return f if isinstance(f, int) else 0


def sys_fchownat(k, dirfd, path, uid, gid, flags):
    return 0


def sys_utimensat(k, dirfd, path, times, flags):
    return 0


def sys_umask(k, mask):
    old, k.umask = k.umask, mask & 0o777
    return old


def _rename(k, olddir, old, newdir, new):
    a, b = _path(k, old), _path(k, new)
    if a is None or b is None:
        return -EFAULT
    a, b = k.files.resolve(olddir, a), k.files.resolve(newdir, b)
    if isinstance(a, int):
        return a
    if isinstance(b, int):
        return b
    return k.host("rename", a, b)


def sys_symlinkat(k, target, newdir, linkpath):
    """symlinkat(2): the target is stored as given, never resolved."""
    text = _path(k, target)
    if text is None:
        return -EFAULT
    return _host_path_op(k, "symlink", newdir, linkpath, text)


def sys_symlink(k, target, linkpath):
    return sys_symlinkat(k, target, AT_FDCWD, linkpath)


def sys_linkat(k, olddir, old, newdir, new, flags):
    if flags & ~(AT_SYMLINK_NOFOLLOW | 0x400 | AT_EMPTY_PATH):     # 0x400: AT_SYMLINK_FOLLOW
        return -EINVAL
    a, b = _path(k, old), _path(k, new)
    if a is None or b is None:
        return -EFAULT
    a, b = k.files.resolve(olddir, a), k.files.resolve(newdir, b)
    if isinstance(a, int):
        return a
    if isinstance(b, int):
        return b
    if procfs.is_virtual(a) or procfs.is_virtual(b):
        return -abi.EPERM
    return k.host("link", a, b, bool(flags & 0x400))


def sys_link(k, old, new):
    return sys_linkat(k, AT_FDCWD, old, AT_FDCWD, new, 0)


def sys_rename(k, old, new):
    return _rename(k, AT_FDCWD, old, AT_FDCWD, new)


def sys_renameat(k, olddir, old, newdir, new):
    return _rename(k, olddir, old, newdir, new)


def sys_renameat2(k, olddir, old, newdir, new, flags):
    if flags:
        return -EINVAL
    return _rename(k, olddir, old, newdir, new)


def sys_statfs(k, path, buf):
    path = _path(k, path)
    if path is None:
        return -EFAULT
    full = k.files.resolve(AT_FDCWD, path)
    if isinstance(full, int):
        return full
    return _write_statfs(k, k.host("statfs", full), buf)


def sys_fstatfs(k, fd, buf):
    f = _file(k, fd)
    if isinstance(f, int):
        return f
    return _write_statfs(k, k.host("statfs", f.path if f.kind in ("blob", "dir", "host") else "/"), buf)


def _write_statfs(k, answer, buf) -> int:
    if isinstance(answer, int):
        return answer
    k.write(buf, struct.pack("<15q", *answer[:15]) + bytes(120 - 15 * 8))
    return 0


# -- extended attributes: none, as on a file system mounted without them ------------------

def sys_xattr_none(k, *_args):
    return -abi.ENODATA


def sys_xattr_unsupported(k, *_args):
    return -abi.ENOTSUP


def sys_zero_list(k, *_args):
    return 0
