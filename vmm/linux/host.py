"""The host side of the Linux personality: real files, clocks and entropy.

Only ``LiveBoundary`` uses this (recording, or ``vmrr run``): each ``call(op, params)``
does one host operation and returns a msgpack-able answer, which the boundary logs.
Replay never gets here. Answers are plain values — a negative errno, bytes, a stat
as a list of ints (vmm/linux/abi.STAT_FIELDS) — so they read back the same from a trace.

Regular files opened read-only are captured whole at open (``["blob", id, stat]``):
their content goes into the trace once per distinct content, and later reads are
served from it. Everything else keeps a real host descriptor behind a handle number.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import resource
import select
import socket
import stat as statmod
import struct
import tempfile
import time

from vmm.linux import abi
from vmm.linux.abi import O_ACCMODE, O_APPEND, O_CREAT, O_DIRECTORY, O_EXCL, O_NOFOLLOW, O_TRUNC

MAX_BLOB = 256 << 20               # bigger read-only files stay host files (each read logged)
CLOCKS = {0: time.CLOCK_REALTIME, 1: time.CLOCK_MONOTONIC, 2: time.CLOCK_PROCESS_CPUTIME_ID,
           3: time.CLOCK_THREAD_CPUTIME_ID, 4: time.CLOCK_MONOTONIC_RAW, 5: time.CLOCK_REALTIME,
           6: time.CLOCK_MONOTONIC, 7: time.CLOCK_BOOTTIME, 8: time.CLOCK_REALTIME, 9: time.CLOCK_BOOTTIME,
           11: time.CLOCK_TAI}
_OPEN_FLAGS = O_ACCMODE | O_CREAT | O_EXCL | O_TRUNC | O_APPEND | O_DIRECTORY | O_NOFOLLOW


def _err(exc: OSError) -> int:
    return -(exc.errno or errno.EIO)


def _close(fd: int) -> int:
    os.close(fd)
    return -1


def stat_list(st: os.stat_result) -> list[int]:
    return [st.st_dev, st.st_ino, st.st_mode, st.st_nlink, st.st_uid, st.st_gid, st.st_rdev, st.st_size,
            st.st_blksize, st.st_blocks, st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns]


# -- sockets (vmm/linux/net.py): real host sockets, always non-blocking on the host ------------

def _sockaddr(addr: list, bind_host: str | None):
    """A guest address (net.py's list form) as Python's socket module takes it."""
    family = addr[0]
    if family == "in":
        host = addr[1]
        if bind_host is not None and host == "0.0.0.0":
            host = bind_host
        return socket.AF_INET, (host, addr[2])
    if family == "in6":
        host = addr[1]
        if bind_host is not None and host == "::":
            host = {"127.0.0.1": "::1", "0.0.0.0": "::"}.get(bind_host, bind_host if ":" in bind_host else "::1")
        return socket.AF_INET6, (host, addr[2], addr[3], addr[4])
    return socket.AF_UNIX, addr[1]


def _addr_list(family: int, addr) -> list | None:
    if family == socket.AF_INET and isinstance(addr, tuple):
        return ["in", addr[0], addr[1]]
    if family == socket.AF_INET6 and isinstance(addr, tuple):
        return ["in6", addr[0], addr[1], addr[2], addr[3]]
    if family == socket.AF_UNIX:
        return ["un", addr.encode("utf-8", "surrogateescape") if isinstance(addr, str) else bytes(addr or b"")]
    return None


class HostSockets:
    """The socket half of HostOS: mixed in, sharing its handle numbers."""

    bind_host: str | None = "127.0.0.1"

    def _sock(self, handle: int) -> socket.socket:
        sock = self.sockets.get(handle)
        if sock is None:
            raise OSError(errno.EBADF, "bad handle")
        return sock

    def _keep(self, sock: socket.socket) -> int:
        sock.setblocking(False)
        handle = self._next
        self._next += 1
        self.sockets[handle] = sock
        self.handles[handle] = sock.fileno()
        return handle

    def op_socket(self, domain: int, kind: int, proto: int):
        return self._keep(socket.socket(domain, kind, proto))

    def op_socketpair(self, domain: int, kind: int, proto: int):
        a, b = socket.socketpair(domain, kind, proto)
        return [self._keep(a), self._keep(b)]

    def op_bind(self, handle: int, addr: list):
        sock = self._sock(handle)
        _family, where = _sockaddr(addr, self.bind_host)
        sock.bind(where)
        return 0

    def op_listen(self, handle: int, backlog: int):
        self._sock(handle).listen(backlog)
        return 0

    def op_accept(self, handle: int):
        sock = self._sock(handle)
        conn, peer = sock.accept()
        return [self._keep(conn), _addr_list(sock.family, peer)]

    def op_connect(self, handle: int, addr: list):
        sock = self._sock(handle)
        _family, where = _sockaddr(addr, None)
        code = sock.connect_ex(where)
        return -code if code else 0

    def op_sockerror(self, handle: int):
        return -self._sock(handle).getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)

    def op_recv(self, handle: int, count: int, flags: int):
        return self._sock(handle).recv(count, flags)

    def op_recvfrom(self, handle: int, count: int, flags: int):
        sock = self._sock(handle)
        data, peer = sock.recvfrom(count, flags)
        return [data, _addr_list(sock.family, peer)]

    def op_send(self, handle: int, data: bytes, flags: int):
        return self._sock(handle).send(data, flags)

    def op_sendrights(self, handle: int, data: bytes, flags: int):
        """sendmsg with SCM_RIGHTS on a connected AF_UNIX socket: the descriptors travel
        inside the machine (the kernel keeps them); the host message carries a token with
        the bytes — a pipe's read end, whose inode names the descriptors — so the receiver
        gets them with exactly these bytes. Returns [bytes sent, token inode]."""
        sock = self._sock(handle)
        reader, writer = os.pipe()
        try:
            sent = sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("<i", reader))], flags)
            token = os.fstat(reader).st_ino
        finally:
            os.close(reader)
            os.close(writer)
        self.tokens.add(token)
        return [sent, token]

    def op_recvmsg(self, handle: int, count: int, flags: int):
        """recvmsg on an AF_UNIX socket, with the descriptors that came with the bytes:
        ["token", inode] for ones a recorded process sent (op_sendrights), ["fd", handle,
        stat] for one a process outside the recording sent (kept as a host file)."""
        sock = self._sock(handle)
        data, ancillary, msg_flags, _addr = sock.recvmsg(count, socket.CMSG_SPACE(253 * 4), flags)
        passed = []
        for level, kind, raw in ancillary:
            if level != socket.SOL_SOCKET or kind != socket.SCM_RIGHTS:
                continue
            for (fd,) in struct.iter_unpack("<i", raw[:len(raw) // 4 * 4]):
                st = os.fstat(fd)
                if statmod.S_ISFIFO(st.st_mode) and st.st_ino in self.tokens:
                    if not flags & socket.MSG_PEEK:
                        self.tokens.discard(st.st_ino)
                    os.close(fd)
                    passed.append(["token", st.st_ino])
                else:
                    os.set_inheritable(fd, False)
                    handle = self._next
                    self._next += 1
                    self.handles[handle] = fd
                    passed.append(["fd", handle, stat_list(st)])
        return [data, passed, msg_flags & socket.MSG_CTRUNC]

    def op_sendto(self, handle: int, data: bytes, flags: int, addr: list):
        sock = self._sock(handle)
        _family, where = _sockaddr(addr, None)
        return sock.sendto(data, flags, where)

    def op_shutdown(self, handle: int, how: int):
        self._sock(handle).shutdown(how)
        return 0

    def op_sockname(self, handle: int, peer: bool):
        sock = self._sock(handle)
        return _addr_list(sock.family, sock.getpeername() if peer else sock.getsockname())

    def op_setsockopt(self, handle: int, level: int, option: int, value: bytes):
        self._sock(handle).setsockopt(level, option, value)
        return 0

    def op_getsockopt(self, handle: int, level: int, option: int, size: int):
        return self._sock(handle).getsockopt(level, option, max(1, min(size, 256)))

    def op_poll(self, targets: list):
        """Readiness now of [[handle, events], ...]: [[index, revents], ...] of the ready ones."""
        poller = select.poll()
        index: dict[int, list[int]] = {}
        for i, (handle, events) in enumerate(targets):
            fd = self.handles.get(handle)
            if fd is None:
                continue
            index.setdefault(fd, []).append(i)
            poller.register(fd, events)
        out = []
        for fd, revents in poller.poll(0):
            for i in index.get(fd, ()):
                out.append([i, revents & (targets[i][1] | 0x38)])
        return sorted(out)

    # -- host epoll instances mirror the host descriptors of a guest epoll -----------------

    def op_epcreate(self):
        ep = select.epoll()
        handle = self._next
        self._next += 1
        self.epolls[handle] = ep
        self.handles[handle] = ep.fileno()
        return handle

    def op_epctl(self, ep_handle: int, op: int, handle: int, events: int):
        ep = self.epolls.get(ep_handle)
        fd = self.handles.get(handle)
        if ep is None or fd is None:
            return -errno.EBADF
        if op == 1:
            ep.register(fd, events)
        elif op == 2:
            ep.unregister(fd)
        else:
            ep.modify(fd, events)
        self.epoll_members.setdefault(ep_handle, {})[fd] = handle
        return 0

    def op_epwait(self, ep_handle: int, maxevents: int):
        ep = self.epolls.get(ep_handle)
        if ep is None:
            return -errno.EBADF
        members = self.epoll_members.get(ep_handle, {})
        return [[members[fd], ev] for fd, ev in ep.poll(0, maxevents) if fd in members]


def _raise_fd_limit() -> None:
    """Every guest descriptor is a host one: take the hard limit (a shell's soft limit of
    1024 would refuse a server's thousandth client before the guest's own limit does)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = abi.MAX_FDS + 64 if hard == resource.RLIM_INFINITY else min(hard, abi.MAX_FDS + 64)
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):
            pass


class HostOS(HostSockets):
    """Performs the personality's host operations. ``blob_ready`` receives new content.

    Args:
        blob_ready: called with (content id, bytes) the first time a content is captured,
            before the answer that names it is returned (the recorder logs it as BLOBs).
    """

    def __init__(self, blob_ready) -> None:
        self.blob_ready = blob_ready
        _raise_fd_limit()
        self.handles: dict[int, int] = {0: 0}          # handle -> host fd; handle 0 is our stdin
        self._next = 3
        self.blobs: dict[str, bytes] = {}
        self.sockets: dict[int, socket.socket] = {}
        self.epolls: dict[int, select.epoll] = {}
        self.epoll_members: dict[int, dict[int, int]] = {}  # epoll handle -> {host fd: handle}
        self._ops: dict[str, object] = {}                   # op name -> bound op_ method
        self.pids_given: set[int] = {os.getpid()}           # ids of guest processes and threads
        self.tokens: set[int] = set()                       # inodes of SCM_RIGHTS tokens in flight

    def call(self, op: str, params: list):
        method = self._ops.get(op)
        if method is None:
            method = self._ops[op] = getattr(self, "op_" + op, None)
            if method is None:
                del self._ops[op]
                raise ValueError(f"unknown host operation {op!r}")
        try:
            return method(*params)
        except OSError as exc:
            return _err(exc)

    def close(self) -> None:
        for holder in list(self.sockets.values()) + list(self.epolls.values()):
            holder.close()
        for handle, fd in list(self.handles.items()):
            if handle and handle not in self.sockets and handle not in self.epolls:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.sockets, self.epolls, self.epoll_members = {}, {}, {}
        self.handles = {0: 0}

    # -- files -----------------------------------------------------------------------

    def op_open(self, path: str, flags: int, mode: int):
        host_flags = flags & _OPEN_FLAGS
        fd = os.open(path, host_flags | os.O_CLOEXEC | os.O_NONBLOCK, mode)
        try:
            st = os.fstat(fd)
            if statmod.S_ISDIR(st.st_mode):
                # glibc's readdir skips entries whose inode is 0: ".." needs its real one.
                entries = [[st.st_ino, 4, "."], [os.stat("..", dir_fd=fd).st_ino, 4, ".."]]
                with os.scandir(fd) as it:
                    for entry in it:
                        dtype = 4 if entry.is_dir(follow_symlinks=False) else \
                            10 if entry.is_symlink() else 8 if entry.is_file(follow_symlinks=False) else 0
                        entries.append([entry.inode(), dtype, entry.name])
                entries[2:] = sorted(entries[2:], key=lambda e: e[2])
                fd = _close(fd)                # a directory is captured whole: no host fd stays open
                return ["dir", stat_list(st), entries]
            if statmod.S_ISREG(st.st_mode) and (flags & O_ACCMODE) == 0 and st.st_size <= MAX_BLOB:
                data = _read_all(fd, st.st_size)
                fd = _close(fd)                # so is a read-only regular file
                file_id = hashlib.sha256(data).hexdigest()
                if file_id not in self.blobs:
                    self.blobs[file_id] = data
                    self.blob_ready(file_id, data)
                return ["blob", file_id, stat_list(st)]
            os.set_blocking(fd, True) if statmod.S_ISREG(st.st_mode) else None
        except BaseException:
            if fd >= 0:
                os.close(fd)
            raise
        handle = self._next
        self._next += 1
        self.handles[handle] = fd
        return ["host", handle, stat_list(st)]

    def op_memfd(self):
        """An anonymous file (memfd_create): unlinked from birth, in /dev/shm when the host
        has one, so it lives in memory as Linux's does."""
        where = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
        fd = os.open(where, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
        handle = self._next
        self._next += 1
        self.handles[handle] = fd
        return ["host", handle, stat_list(os.fstat(fd))]

    def _fd(self, handle: int) -> int:
        fd = self.handles.get(handle)
        if fd is None:
            raise OSError(errno.EBADF, "bad handle")
        return fd

    def op_close(self, handle: int):
        fd = self.handles.pop(handle, None)
        holder = self.sockets.pop(handle, None) or self.epolls.pop(handle, None)
        self.epoll_members.pop(handle, None)
        for members in self.epoll_members.values():
            members.pop(fd, None)
        if holder is not None:
            holder.close()
        elif fd is not None and handle:
            os.close(fd)
        return 0

    def op_read(self, handle: int, count: int):
        return os.read(self._fd(handle), count)

    def op_pread(self, handle: int, count: int, offset: int):
        return os.pread(self._fd(handle), count, offset)

    def op_write(self, handle: int, data: bytes):
        return os.write(self._fd(handle), data)

    def op_pwrite(self, handle: int, data: bytes, offset: int):
        return os.pwrite(self._fd(handle), data, offset)

    def op_lseek(self, handle: int, offset: int, whence: int):
        return os.lseek(self._fd(handle), offset, whence)

    def op_fstat(self, handle: int):
        return stat_list(os.fstat(self._fd(handle)))

    def op_stdio_stat(self, fd: int):
        """fstat of vmrr's own stdout or stderr, which the program's are: a terminal, a
        pipe, a file — glibc buffers stdout by what it finds there."""
        return stat_list(os.fstat(fd if fd in (1, 2) else 1))

    def op_fsync(self, handle: int):
        os.fsync(self._fd(handle))
        return 0

    def op_ftruncate(self, handle: int, length: int):
        os.ftruncate(self._fd(handle), length)
        return 0

    def op_fchmod(self, handle: int, mode: int):
        os.fchmod(self._fd(handle), mode)
        return 0

    def op_ioctl(self, handle: int, request: int):
        fd = self.handles.get(handle, handle if handle in (1, 2) else None)
        if fd is None:
            return -errno.EBADF
        size = {0x5401: 36, 0x5413: 8, 0x540F: 4}[request]
        return fcntl.ioctl(fd, request, bytes(size))

    # -- paths -----------------------------------------------------------------------

    def op_stat(self, path: str, follow: bool):
        return stat_list(os.stat(path, follow_symlinks=bool(follow)))

    def op_access(self, path: str, mode: int):
        return 0 if os.access(path, mode) else -errno.EACCES if os.path.lexists(path) else -errno.ENOENT

    def op_readlink(self, path: str):
        return os.readlink(path)

    def op_unlink(self, path: str):
        os.unlink(path)
        return 0

    def op_rmdir(self, path: str):
        os.rmdir(path)
        return 0

    def op_mkdir(self, path: str, mode: int):
        os.mkdir(path, mode)
        return 0

    def op_chmod(self, path: str, mode: int):
        os.chmod(path, mode)
        return 0

    def op_symlink(self, link: str, target: str):
        os.symlink(target, link)
        return 0

    def op_link(self, old: str, new: str, follow: bool):
        os.link(old, new, follow_symlinks=follow)
        return 0

    def op_rename(self, old: str, new: str):
        os.rename(old, new)
        return 0

    def op_statfs(self, path: str):
        st = os.statvfs(path)
        return [0xEF53, st.f_bsize, st.f_blocks, st.f_bfree, st.f_bavail, st.f_files, st.f_ffree, 0,
                st.f_namemax, st.f_frsize, st.f_flag, 0, 0, 0, 0]

    # -- time, entropy, identity ----------------------------------------------------------

    def op_clock(self, clock: int):
        return time.clock_gettime_ns(CLOCKS.get(clock, time.CLOCK_REALTIME))

    def op_random(self, count: int):
        return os.urandom(count)

    def op_newpid(self, after: int):
        """An id for a new guest process or thread: the first at or after ``after`` that no
        process on this host has now (wrapping below pid_max, as Linux allocates)."""
        limit = _pid_max()
        candidate = after if 1 < after < limit else 300
        for _ in range(limit):
            if candidate not in self.pids_given and not os.path.exists(f"/proc/{candidate}"):
                self.pids_given.add(candidate)
                return candidate
            candidate = candidate + 1 if candidate + 1 < limit else 300
        return -errno.EAGAIN

    def op_uname(self):
        u = os.uname()
        return [u.sysname, u.nodename, u.release, u.version, u.machine]


def _pid_max() -> int:
    try:
        with open("/proc/sys/kernel/pid_max") as f:
            return max(1024, min(int(f.read()), 1 << 22))
    except (OSError, ValueError):
        return 32768


def _read_all(fd: int, size: int) -> bytes:
    parts, total = [], 0
    while True:
        chunk = os.pread(fd, max(65536, size - total), total)
        if not chunk:
            break
        parts.append(chunk)
        total += len(chunk)
    return b"".join(parts)
