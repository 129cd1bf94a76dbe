"""Credentials: user and group ids, supplementary groups, capabilities.

A process starts with the ids of the user who recorded (the trace header's identity),
and changes them as it would in a user namespace of its own: a process whose effective
uid is 0 holds every capability and may take any ids (a server started as root drops
to ``nobody``), any other may only move between the ids it has (POSIX's rules for
setuid, setreuid, setresuid and their gid twins). The host is not asked: what the
guest's files and sockets may do on the host stays what the recording user may do.

``creds`` is ``[ruid, euid, suid, rgid, egid, sgid]``; ``groups`` the supplementary ones.
"""

from __future__ import annotations

import struct

from vmm.linux import abi
from vmm.linux.files import s32

NGROUPS_MAX = 65536
UNCHANGED = 0xFFFFFFFF                     # -1 as a uid_t: "leave this id as it is"
RUID, EUID, SUID, RGID, EGID, SGID = range(6)
CAP_V1, CAP_V2, CAP_V3 = 0x19980330, 0x20071026, 0x20080522
CAP_LAST_CAP = 40                          # CAP_CHECKPOINT_RESTORE (Linux 5.9 and later)
ALL_CAPS = (1 << (CAP_LAST_CAP + 1)) - 1


def _privileged(k) -> bool:
    """CAP_SETUID/CAP_SETGID: held by effective uid 0 in the process's own namespace."""
    return k.proc.creds[EUID] == 0


def _ids(raw: int) -> int:
    return raw & 0xFFFFFFFF


def sys_getuid(k):
    return k.proc.creds[RUID]


def sys_geteuid(k):
    return k.proc.creds[EUID]


def sys_getgid(k):
    return k.proc.creds[RGID]


def sys_getegid(k):
    return k.proc.creds[EGID]


def _getres(k, first: int, r, e, s):
    creds = k.proc.creds
    for ptr, value in zip((r, e, s), creds[first:first + 3]):
        k.write(ptr, struct.pack("<I", value))
    return 0


def sys_getresuid(k, ruid, euid, suid):
    return _getres(k, RUID, ruid, euid, suid)


def sys_getresgid(k, rgid, egid, sgid):
    return _getres(k, RGID, rgid, egid, sgid)


def _set_one(k, first: int, value: int) -> int:
    """setuid/setgid: privileged, all three ids; else the effective one, to the real or saved."""
    value, creds = _ids(value), k.proc.creds
    if value == UNCHANGED:
        return -abi.EINVAL
    if _privileged(k):
        creds[first:first + 3] = [value] * 3
    elif value in (creds[first], creds[first + 2]):
        creds[first + 1] = value
    else:
        return -abi.EPERM
    return 0


def sys_setuid(k, uid):
    return _set_one(k, RUID, uid)


def sys_setgid(k, gid):
    return _set_one(k, RGID, gid)


def _set_re(k, first: int, real: int, effective: int) -> int:
    """setreuid/setregid (Linux's rules: the saved id follows a new effective one when the
    real one is set or the effective one moves away from the real)."""
    real, effective, creds = _ids(real), _ids(effective), k.proc.creds
    old_real, old_effective, saved = creds[first:first + 3]
    privileged = _privileged(k)
    if real != UNCHANGED and not privileged and real not in (old_real, old_effective):
        return -abi.EPERM
    if effective != UNCHANGED and not privileged and effective not in (old_real, old_effective, saved):
        return -abi.EPERM
    new_real = old_real if real == UNCHANGED else real
    new_effective = old_effective if effective == UNCHANGED else effective
    if real != UNCHANGED or (effective != UNCHANGED and new_effective != old_real):
        saved = new_effective
    creds[first:first + 3] = [new_real, new_effective, saved]
    return 0


def sys_setreuid(k, ruid, euid):
    return _set_re(k, RUID, ruid, euid)


def sys_setregid(k, rgid, egid):
    return _set_re(k, RGID, rgid, egid)


def _set_res(k, first: int, values: tuple[int, int, int]) -> int:
    """setresuid/setresgid: unprivileged, each new id is one of the three current ones."""
    creds = k.proc.creds
    current = creds[first:first + 3]
    wanted = [_ids(v) for v in values]
    if not _privileged(k) and any(v != UNCHANGED and v not in current for v in wanted):
        return -abi.EPERM
    creds[first:first + 3] = [old if v == UNCHANGED else v for old, v in zip(current, wanted)]
    return 0


def sys_setresuid(k, ruid, euid, suid):
    return _set_res(k, RUID, (ruid, euid, suid))


def sys_setresgid(k, rgid, egid, sgid):
    return _set_res(k, RGID, (rgid, egid, sgid))


def sys_setfsuid(k, uid):
    """The filesystem uid follows the effective one here; the call answers the old one."""
    return k.proc.creds[EUID]


def sys_setfsgid(k, gid):
    return k.proc.creds[EGID]


def sys_getgroups(k, size, lst):
    groups = k.proc.groups
    size = s32(size)
    if size < 0:
        return -abi.EINVAL
    if size == 0:
        return len(groups)
    if size < len(groups):
        return -abi.EINVAL
    if groups:
        k.write(lst, struct.pack(f"<{len(groups)}I", *groups))
    return len(groups)


def sys_setgroups(k, size, lst):
    size = s32(size)
    if size < 0 or size > NGROUPS_MAX:
        return -abi.EINVAL
    if not _privileged(k):
        return -abi.EPERM
    groups = list(struct.unpack(f"<{size}I", k.read(lst, 4 * size))) if size else []
    k.proc.groups = sorted(set(groups))
    return 0


def _cap_words(version: int) -> int | None:
    return {CAP_V1: 1, CAP_V2: 2, CAP_V3: 2}.get(version)


def sys_capget(k, header, data):
    version, pid = struct.unpack("<Ii", k.read(header, 8))
    words = _cap_words(version)
    if words is None:
        k.write(header, struct.pack("<I", CAP_V3))
        return 0 if not data else -abi.EINVAL
    target = k.processes.get(pid) if pid else k.proc
    if target is None:
        return -abi.ESRCH
    if data:
        caps = ALL_CAPS if target.creds[EUID] == 0 else 0
        raw = b"".join(struct.pack("<III", (caps >> (32 * i)) & 0xFFFFFFFF, (caps >> (32 * i)) & 0xFFFFFFFF, 0)
                       for i in range(words))
        k.write(data, raw)
    return 0


def sys_capset(k, header, data):
    """Capabilities follow the effective uid here: a process may lower them (the answer is
    0, nothing changes) but not raise what it does not have."""
    version, pid = struct.unpack("<Ii", k.read(header, 8))
    words = _cap_words(version)
    if words is None:
        k.write(header, struct.pack("<I", CAP_V3))
        return -abi.EINVAL
    if pid not in (0, k.pid):
        return -abi.EPERM
    held = ALL_CAPS if _privileged(k) else 0
    raw = k.read(data, 12 * words)
    wanted = 0
    for i in range(words):
        effective, permitted, _inheritable = struct.unpack_from("<III", raw, 12 * i)
        wanted |= (effective | permitted) << (32 * i)
    return 0 if wanted & ~held == 0 else -abi.EPERM
