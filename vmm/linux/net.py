"""Sockets: real host sockets behind the program's descriptors, every answer logged.

A guest socket is a host socket (vmm/linux/host.py), always non-blocking on the host.
Every operation is one host operation whose answer — bytes received, a byte count, an
errno, a peer's address — goes into the SYSCALL event; replay reads the answers back
and contacts nothing. A call that would block on a blocking socket makes the thread
wait for the descriptor (vmm/linux/tasks.py); the recorder's scheduler polls the host
socket and runs the call again when it is ready.

A bind to the wildcard address (0.0.0.0, ::) listens on the host's 127.0.0.1 (::1) at
the same port; a connect reaches the address the program names. AF_INET, AF_INET6 and
AF_UNIX; stream and datagram sockets.
"""

from __future__ import annotations

import ipaddress
import struct

from vmm.linux import abi
from vmm.linux.files import OpenFile, s32
from vmm.linux.poll import POLLIN, POLLOUT
from vmm.linux.tasks import Blocked

AF_UNIX, AF_INET, AF_INET6 = 1, 2, 10
SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET = 1, 2, 5
SOCK_NONBLOCK, SOCK_CLOEXEC = 0o4000, 0o2000000
MSG_OOB, MSG_PEEK, MSG_TRUNC, MSG_DONTWAIT, MSG_WAITALL, MSG_NOSIGNAL = 1, 2, 0x20, 0x40, 0x100, 0x4000
MSG_CTRUNC, MSG_CMSG_CLOEXEC = 0x8, 0x40000000
SOL_SOCKET, SCM_RIGHTS, SCM_MAX_FD = 1, 1, 253
HOST_MSG_FLAGS = MSG_OOB | MSG_PEEK | MSG_TRUNC
ENOTSOCK, EDESTADDRREQ, EAFNOSUPPORT, EINPROGRESS, EALREADY, EISCONN = 88, 89, 97, 115, 114, 106
ESOCKTNOSUPPORT, EOPNOTSUPP, EMSGSIZE = 94, 95, 90
UIO_MAXIOV = 1024
MAX_DATAGRAM = 65536
SOCKET_STAT = [0, 0, abi.S_IFSOCK | 0o777, 1, 0, 0, 0, 0, 4096, 0, 0, 0, 0]


# -- addresses ---------------------------------------------------------------------------

def read_sockaddr(k, ptr: int, length: int) -> list | int:
    """A sockaddr from the program as net's list form: ["in", host, port] and the like."""
    length = s32(length)
    if length < 2 or length > 128:
        return -abi.EINVAL
    raw = k.read(ptr, length)
    family = struct.unpack_from("<H", raw)[0]
    if family == AF_INET:
        if length < 16:
            return -abi.EINVAL
        port = struct.unpack_from(">H", raw, 2)[0]
        return ["in", str(ipaddress.IPv4Address(raw[4:8])), port]
    if family == AF_INET6:
        if length < 24:
            return -abi.EINVAL
        port, flow = struct.unpack_from(">HI", raw, 2)
        scope = struct.unpack_from("<I", raw, 24)[0] if length >= 28 else 0
        return ["in6", str(ipaddress.IPv6Address(raw[8:24])), port, flow, scope]
    if family == AF_UNIX:
        path = raw[2:]
        if path[:1] != b"\0":
            path = path.split(b"\0", 1)[0]
            if not path.startswith(b"/"):                  # relative to the program's cwd
                resolved = k.files.resolve(abi.AT_FDCWD, path.decode("utf-8", "surrogateescape"))
                if isinstance(resolved, int):
                    return resolved
                path = resolved.encode("utf-8", "surrogateescape")
        return ["un", path]
    return -EAFNOSUPPORT


def pack_sockaddr(addr: list | None) -> bytes:
    if not addr:
        return struct.pack("<H", 0)
    if addr[0] == "in":
        return struct.pack("<H", AF_INET) + struct.pack(">H", addr[2]) + ipaddress.IPv4Address(addr[1]).packed + bytes(8)
    if addr[0] == "in6":
        return (struct.pack("<H", AF_INET6) + struct.pack(">HI", addr[2], addr[3])
                + ipaddress.IPv6Address(addr[1].split("%")[0]).packed + struct.pack("<I", addr[4]))
    return struct.pack("<H", AF_UNIX) + bytes(addr[1]) + (b"\0" if addr[1][:1] != b"\0" else b"")


def write_sockaddr(k, addr: list | None, ptr: int, len_ptr: int) -> None:
    """Store an address where the program asked for one (accept, recvfrom, getsockname)."""
    if not ptr or not len_ptr:
        return
    room = s32(struct.unpack("<I", k.read(len_ptr, 4))[0])
    raw = pack_sockaddr(addr)
    if room > 0:
        k.write(ptr, raw[:room])
    k.write(len_ptr, struct.pack("<I", len(raw)))


# -- the descriptor ------------------------------------------------------------------------

def _socket(k, fd: int) -> OpenFile | int:
    f = k.files.get(fd)
    if f is None:
        return -abi.EBADF
    if f.kind != "socket":
        return -ENOTSOCK
    return f


def _install(k, handle: int, domain: int, kind: int, flags: int) -> int:
    f = OpenFile("socket", f"socket:[{handle}]", abi.O_RDWR | (flags & SOCK_NONBLOCK),
                 stat=list(SOCKET_STAT), handle=handle, data=[domain, kind, 0, None, []])
    # data: domain, type, a connect in progress, the other end of a socketpair (its
    # description), and the descriptors sent to this end with SCM_RIGHTS, not yet received.
    fd = k.files.install(f, cloexec=bool(flags & SOCK_CLOEXEC))
    if fd < 0:
        k.host("close", handle)
    return fd


def _blocks(f: OpenFile, flags: int = 0) -> bool:
    return not (f.flags & abi.O_NONBLOCK or flags & MSG_DONTWAIT)


def _wait(fd: int, events: int):
    return Blocked(["fds", [[s32(fd), events]]])


# -- data (also read/write/readv/writev on a socket, files.py) -------------------------------

def recv(k, f: OpenFile, fd: int, count: int, flags: int) -> bytes | int:
    count = max(0, min(count, 1 << 20))
    if f.data[0] == AF_UNIX and f.data[3] is None:
        # Descriptors may come with the bytes (SCM_RIGHTS from another process): a read
        # that does not take them closes them, as Linux does.
        got = _recv_rights(k, f, fd, count, flags)
        if isinstance(got, int):
            return got
        for passed in got[1]:
            k.files.drop(passed)                     # the reference the message held
        return got[0]
    data = k.host("recv", f.handle, count, flags & HOST_MSG_FLAGS)
    if data == -abi.EAGAIN and _blocks(f, flags):
        raise _wait(fd, POLLIN)
    if isinstance(data, bytes) and len(data) > count and not flags & MSG_TRUNC:
        raise ValueError("more bytes than asked for")
    return data


def send(k, f: OpenFile, fd: int, data: bytes, flags: int) -> int:
    sent = k.host("send", f.handle, data, flags & HOST_MSG_FLAGS)
    if sent == -abi.EAGAIN and _blocks(f, flags):
        raise _wait(fd, POLLOUT)
    if sent == -abi.EPIPE and not flags & MSG_NOSIGNAL:
        k.signals.raise_signal(abi.SIGPIPE, abi.SI_USER, 0)
    if isinstance(sent, int) and sent > len(data):
        raise ValueError("more bytes sent than given")
    return sent


# -- the system calls ------------------------------------------------------------------------

def sys_socket(k, domain, kind, protocol):
    domain, flags = s32(domain), kind & (SOCK_NONBLOCK | SOCK_CLOEXEC)
    base = kind & 0xF
    if kind & ~(0xF | SOCK_NONBLOCK | SOCK_CLOEXEC):
        return -abi.EINVAL
    if domain not in (AF_UNIX, AF_INET, AF_INET6):
        return -EAFNOSUPPORT
    if base not in (SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET):
        return -ESOCKTNOSUPPORT
    handle = k.host("socket", domain, base, s32(protocol))
    if handle < 0:
        return handle
    return _install(k, handle, domain, base, flags)


def sys_socketpair(k, domain, kind, protocol, sv):
    domain, flags, base = s32(domain), kind & (SOCK_NONBLOCK | SOCK_CLOEXEC), kind & 0xF
    if domain != AF_UNIX:
        return -EOPNOTSUPP if domain in (AF_INET, AF_INET6) else -EAFNOSUPPORT
    pair = k.host("socketpair", domain, base, s32(protocol))
    if isinstance(pair, int):
        return pair
    a, b = _install(k, pair[0], domain, base, flags), _install(k, pair[1], domain, base, flags)
    if a >= 0 and b >= 0:
        ends = k.files.get(a), k.files.get(b)
        ends[0].data[3], ends[1].data[3] = ends[1], ends[0]      # SCM_RIGHTS go to the other end
    k.write(sv, struct.pack("<ii", a, b))
    return 0


def sys_bind(k, fd, addr, length):
    f = _socket(k, fd)
    if isinstance(f, int):
        return f
    where = read_sockaddr(k, addr, length)
    return where if isinstance(where, int) else k.host("bind", f.handle, where)


def sys_listen(k, fd, backlog):
    f = _socket(k, fd)
    if isinstance(f, int):
        return f
    return k.host("listen", f.handle, max(0, min(s32(backlog), 4096)))


def sys_accept(k, fd, addr, addrlen):
    return sys_accept4(k, fd, addr, addrlen, 0)


def sys_accept4(k, fd, addr, addrlen, flags):
    f = _socket(k, fd)
    if isinstance(f, int):
        return f
    if flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC):
        return -abi.EINVAL
    answer = k.host("accept", f.handle)
    if answer == -abi.EAGAIN and _blocks(f):
        raise _wait(fd, POLLIN)
    if isinstance(answer, int):
        return answer
    handle, peer = answer
    new = _install(k, handle, f.data[0], f.data[1], flags)
    if new >= 0:
        write_sockaddr(k, peer, addr, addrlen)
    return new


def sys_connect(k, fd, addr, length):
    f = _socket(k, fd)
    if isinstance(f, int):
        return f
    if f.data[2] == 1:                          # a blocking connect in progress, run again when ready
        f.data[2] = 0
        return k.host("sockerror", f.handle)
    where = read_sockaddr(k, addr, length)
    if isinstance(where, int):
        return where
    result = k.host("connect", f.handle, where)
    if result in (-EINPROGRESS, -abi.EAGAIN) and _blocks(f):
        f.data[2] = 1
        raise _wait(fd, POLLOUT)
    return result


def sys_shutdown(k, fd, how):
    f = _socket(k, fd)
    if isinstance(f, int):
        return f
    return -abi.EINVAL if s32(how) not in (0, 1, 2) else k.host("shutdown", f.handle, s32(how))


def _name(k, fd, addr, addrlen, peer: bool):
    f = _socket(k, fd)
    if isinstance(f, int):
        return f
    answer = k.host("sockname", f.handle, peer)
    if isinstance(answer, int):
        return answer
    write_sockaddr(k, answer, addr, addrlen)
    return 0


def sys_getsockname(k, fd, addr, addrlen):
    return _name(k, fd, addr, addrlen, False)


def sys_getpeername(k, fd, addr, addrlen):
    return _name(k, fd, addr, addrlen, True)


def sys_setsockopt(k, fd, level, option, value, length):
    f = _socket(k, fd)
    if isinstance(f, int):
        return f
    length = s32(length)
    if not 0 <= length <= 256:
        return -abi.EINVAL
    return k.host("setsockopt", f.handle, s32(level), s32(option), k.read(value, length) if length else b"")


def sys_getsockopt(k, fd, level, option, value, len_ptr):
    f = _socket(k, fd)
    if isinstance(f, int):
        return f
    size = s32(struct.unpack("<I", k.read(len_ptr, 4))[0])
    if size < 0:
        return -abi.EINVAL
    answer = k.host("getsockopt", f.handle, s32(level), s32(option), size)
    if isinstance(answer, int):
        return answer
    answer = answer[:size]
    k.write(value, answer)
    k.write(len_ptr, struct.pack("<I", len(answer)))
    return 0


def sys_sendto(k, fd, buf, length, flags, addr, addrlen):
    f = _socket(k, fd)
    if isinstance(f, int):
        return f
    data = k.read(buf, min(length, 1 << 24))
    if addr:
        where = read_sockaddr(k, addr, addrlen)
        if isinstance(where, int):
            return where
        sent = k.host("sendto", f.handle, data, flags & HOST_MSG_FLAGS, where)
        if sent == -abi.EAGAIN and _blocks(f, flags):
            raise _wait(fd, POLLOUT)
        return sent
    return send(k, f, fd, data, flags)


def sys_recvfrom(k, fd, buf, length, flags, addr, addrlen):
    f = _socket(k, fd)
    if isinstance(f, int):
        return f
    if addr and f.data[1] != SOCK_STREAM:
        answer = k.host("recvfrom", f.handle, max(0, min(length, MAX_DATAGRAM)), flags & HOST_MSG_FLAGS)
        if answer == -abi.EAGAIN and _blocks(f, flags):
            raise _wait(fd, POLLIN)
        if isinstance(answer, int):
            return answer
        data, peer = answer
        write_sockaddr(k, peer, addr, addrlen)
    else:
        data = recv(k, f, fd, length, flags)
        if isinstance(data, int):
            return data
        if addr and addrlen:
            k.write(addrlen, struct.pack("<I", 0))
    k.write(buf, data[:length])
    return len(data)


def _message(k, fd: int, msg: int) -> tuple[OpenFile, int, int, list[tuple[int, int]]] | int:
    """sendmsg/recvmsg: the socket and the ``struct msghdr``'s name and iovecs, or -errno."""
    f = _socket(k, fd)
    if isinstance(f, int):
        return f
    name, namelen, iov, iovlen, _control, _controllen, _flags = struct.unpack("<QI4xQQQQi4x", k.read(msg, 56))
    if iovlen > UIO_MAXIOV:
        return -EMSGSIZE
    raw = k.read(iov, 16 * iovlen) if iovlen else b""
    return f, name, namelen, [struct.unpack_from("<QQ", raw, 16 * i) for i in range(iovlen)]


def _rights_sent(k, msg: int) -> list | int:
    """The open files a sendmsg's SCM_RIGHTS messages name (other control messages, such
    as SCM_CREDENTIALS, are not kept), or -errno."""
    control, length = struct.unpack("<QQ", k.read(msg + 32, 16))
    if not control or length < 16:
        return []
    if length > 1 << 16:
        return -abi.EINVAL
    raw, at, files = k.read(control, length), 0, []
    while at + 16 <= length:
        size, level, kind = struct.unpack_from("<Qii", raw, at)
        if size < 16 or at + size > length:
            return -abi.EINVAL
        if level == SOL_SOCKET and kind == SCM_RIGHTS:
            for (fd,) in struct.iter_unpack("<i", raw[at + 16:at + 16 + (size - 16) // 4 * 4]):
                f = k.files.get(fd)
                if f is None:
                    return -abi.EBADF
                files.append(f)
        at += (size + 7) & ~7
    return -abi.EINVAL if len(files) > SCM_MAX_FD else files


def _rights_received(k, f: OpenFile, msg: int, flags: int) -> int:
    """recvmsg on a socketpair's end: the descriptors sent to it with the data it read."""
    return _install_rights(k, msg, f.data[4].pop(0) if f.data[4] else [], flags)


def _install_rights(k, msg: int, passed: list, flags: int) -> int:
    """Descriptors a message brought, installed, and their control message written (as
    many as the control buffer holds; the rest close); the msg_flags to report."""
    control, room = struct.unpack("<QQ", k.read(msg + 32, 16))
    if not passed:
        k.write(msg + 40, struct.pack("<Q", 0))
        return 0
    needed = 16 + 4 * len(passed)
    fds = []
    if control and room >= needed:
        for p in passed:
            fd = k.files.install(p, cloexec=bool(flags & MSG_CMSG_CLOEXEC))
            if fd < 0:
                break
            fds.append(fd)
    for p in passed:
        k.files.drop(p)                              # the reference the message held
    if not fds:
        k.write(msg + 40, struct.pack("<Q", 0))
        return MSG_CTRUNC
    k.write(control, struct.pack("<Qii", 16 + 4 * len(fds), SOL_SOCKET, SCM_RIGHTS)
            + struct.pack(f"<{len(fds)}i", *fds))
    k.write(msg + 40, struct.pack("<Q", (16 + 4 * len(fds) + 7) & ~7))
    return MSG_CTRUNC if len(fds) < len(passed) else 0


def sys_sendmsg(k, fd, msg, flags):
    message = _message(k, fd, msg)
    if isinstance(message, int):
        return message
    f, name, namelen, vecs = message
    data = b"".join(k.read(base, length) for base, length in vecs if length)
    rights = _rights_sent(k, msg)
    if isinstance(rights, int):
        return rights
    if rights:
        peer = f.data[3]
        if f.data[0] != AF_UNIX:
            return -abi.EINVAL
        if peer is None:
            if name:                     # to a named datagram socket: not offered (docs/linux.md)
                return -EOPNOTSUPP
            return _send_rights(k, f, fd, data, flags, rights)
        sent = send(k, f, fd, data, flags)
        if isinstance(sent, int) and sent > 0:
            for p in rights:
                p.ref += 1                 # the message holds them until received
            peer.data[4].append(rights)
        return sent
    if name and f.data[1] != SOCK_STREAM:
        where = read_sockaddr(k, name, namelen)
        if isinstance(where, int):
            return where
        return k.host("sendto", f.handle, data, flags & HOST_MSG_FLAGS, where)
    return send(k, f, fd, data, flags)


def _send_rights(k, f: OpenFile, fd: int, data: bytes, flags: int, rights: list) -> int:
    """SCM_RIGHTS on a connected AF_UNIX socket that is not one end of a socketpair (a
    server's listening socket accepted it, or it connected to one): the host carries a
    token with the bytes, and the descriptions wait in the kernel under its name
    (``in_flight``) until a recvmsg takes the token out of the stream."""
    answer = k.host("sendrights", f.handle, data, flags & HOST_MSG_FLAGS)
    if answer == -abi.EAGAIN and _blocks(f, flags):
        raise _wait(fd, POLLOUT)
    if answer == -abi.EPIPE and not flags & MSG_NOSIGNAL:
        k.signals.raise_signal(abi.SIGPIPE, abi.SI_USER, 0)
    if isinstance(answer, int):
        return answer
    sent, token = answer
    if type(sent) is not int or not 0 <= sent <= len(data) or type(token) is not int or token in k.in_flight:
        raise ValueError("a malformed answer to sendmsg with descriptors")
    for p in rights:
        p.ref += 1                         # the message holds them until received
    k.in_flight[token] = rights
    return sent


def _recv_rights(k, f: OpenFile, fd: int, count: int, flags: int) -> tuple | int:
    """recvmsg on an AF_UNIX socket outside a socketpair: (bytes, descriptions passed with
    them, MSG_CTRUNC if the host cut some) or -errno."""
    answer = k.host("recvmsg", f.handle, max(0, min(count, 1 << 20)), flags & HOST_MSG_FLAGS)
    if answer == -abi.EAGAIN and _blocks(f, flags):
        raise _wait(fd, POLLIN)
    if isinstance(answer, int):
        return answer
    data, passed, cut = answer
    if type(data) is not bytes or len(data) > count and not flags & MSG_TRUNC or type(passed) is not list:
        raise ValueError("a malformed answer to recvmsg")
    files = []
    for item in passed:
        if type(item) is list and len(item) == 2 and item[0] == "token" and item[1] in k.in_flight:
            if not flags & MSG_PEEK:                 # a peek leaves them in the stream
                files.extend(k.in_flight.pop(item[1]))
        elif type(item) is list and len(item) == 3 and item[0] == "fd" and type(item[1]) is int:
            # From a process outside the recording: a host file of its own.
            outside = OpenFile("host", f"host:[{item[2][1] if type(item[2]) is list else 0}]", abi.O_RDWR,
                               stat=item[2], handle=item[1])
            outside.ref = 1
            files.append(outside)
        else:
            raise ValueError("a malformed descriptor in a recvmsg answer")
    return data, files, MSG_CTRUNC if cut else 0


def sys_recvmsg(k, fd, msg, flags):
    message = _message(k, fd, msg)
    if isinstance(message, int):
        return message
    f, name, namelen, vecs = message
    total = sum(length for _base, length in vecs)
    peer = None
    if f.data[0] == AF_UNIX and f.data[3] is None and not (name and f.data[1] != SOCK_STREAM):
        got = _recv_rights(k, f, fd, total, flags)
        if isinstance(got, int):
            return got
        data, passed, msg_flags = got
        scatter(k, vecs, data)
        if name:
            k.write(msg + 8, struct.pack("<I", 0))
        msg_flags |= _install_rights(k, msg, passed, flags)
        k.write(msg + 48, struct.pack("<i", msg_flags))
        return len(data)
    if name and f.data[1] != SOCK_STREAM:
        answer = k.host("recvfrom", f.handle, min(total, MAX_DATAGRAM), flags & HOST_MSG_FLAGS)
        if answer == -abi.EAGAIN and _blocks(f, flags):
            raise _wait(fd, POLLIN)
        if isinstance(answer, int):
            return answer
        data, peer = answer
    else:
        data = recv(k, f, fd, total, flags)
        if isinstance(data, int):
            return data
    scatter(k, vecs, data)
    if name:
        raw = pack_sockaddr(peer)
        k.write(name, raw[:namelen])
        k.write(msg + 8, struct.pack("<I", len(raw) if peer else 0))
    msg_flags = _rights_received(k, f, msg, flags) if data else 0
    if not data:
        k.write(msg + 40, struct.pack("<Q", 0))           # msg_controllen: no ancillary data
    k.write(msg + 48, struct.pack("<i", msg_flags))      # msg_flags
    return len(data)


def scatter(k, vecs: list[tuple[int, int]], data: bytes) -> None:
    at = 0
    for base, length in vecs:
        if at >= len(data):
            break
        piece = data[at:at + length]
        k.write(base, piece)
        at += len(piece)
