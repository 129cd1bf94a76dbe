"""System V IPC: shared memory segments and semaphore sets.

The machine is its own IPC namespace (as a container is): keys and ids name segments and
sets made by the recorded processes, never the host's, so a recording neither sees nor
disturbs another program's IPC objects and replays without the host. Ids are made as
Linux makes them (index + 32768 × a sequence number), so they are a pure function of
what the program did.

A segment is a shared object (vmm/linux/shmem.py): shmat maps its frames, and every
process attaching it, or inheriting the attachment across fork, sees one copy. IPC_RMID
hides it from shmget at once and frees it when the last attachment goes.

A semaphore operation that cannot complete waits (``["sem", semid, num, zero]``: the set
and the first operation that blocked, for GETNCNT and GETZCNT) and runs again whenever
the set changes; with IPC_NOWAIT it fails with EAGAIN, and a signal ends it with EINTR
(never restarted, as on Linux). SEM_UNDO adjustments are kept per process and applied
when it exits; a fork does not inherit them.
"""

from __future__ import annotations

import struct

from vmm.linux import abi
from vmm.linux.files import s32
from vmm.linux.memory import MAP_SHARED, PAGE, PROT_EXEC, PROT_READ, PROT_WRITE, USER_END, page_up
from vmm.linux.shmem import PREFIX
from vmm.linux.tasks import WAIT, Blocked

IPC_PRIVATE = 0
IPC_CREAT, IPC_EXCL, IPC_NOWAIT = 0o1000, 0o2000, 0o4000
IPC_RMID, IPC_SET, IPC_STAT, IPC_INFO = 0, 1, 2, 3
IPC_64 = 0x100
SHM_LOCK, SHM_UNLOCK, SHM_STAT, SHM_INFO, SHM_STAT_ANY = 11, 12, 13, 14, 15
SHM_RDONLY, SHM_RND, SHM_REMAP, SHM_EXEC = 0o10000, 0o20000, 0o40000, 0o100000
SHM_DEST, SHM_LOCKED = 0o1000, 0o2000
GETPID, GETVAL, GETALL, GETNCNT, GETZCNT, SETVAL, SETALL, SEM_STAT, SEM_INFO, SEM_STAT_ANY = range(11, 21)
SEM_UNDO = 0x1000
SEQ_MULTIPLIER = 32768
IPCMNI = 32768
SHMMIN, SHMMAX, SHMALL, SHMMNI = 1, (1 << 64) - 1 - (1 << 24), (1 << 64) - 1 - (1 << 24), 4096
SEMMSL, SEMMNS, SEMOPM, SEMMNI, SEMVMX, SEMAEM = 32000, 1024000000, 500, 32000, 32767, 32767
EIDRM = 43

_PERM = struct.Struct("<iIIIIHHHHQQ")         # struct ipc64_perm: 48 bytes
_SHMID_DS = struct.Struct("<48sQqqqiiQQQ")    # struct shmid64_ds: 112 bytes
_SEMID_DS = struct.Struct("<48sqQqQQQQ")      # struct semid64_ds: 104 bytes
_SEMBUF = struct.Struct("<Hhh")               # struct sembuf

# One segment or set: [id, key, mode, uid, gid, cuid, cgid, ...] then its kind's fields.
SHM_FIELDS = ("id", "key", "mode", "uid", "gid", "cuid", "cgid", "object", "size", "cpid", "lpid",
              "atime", "dtime", "ctime")
SEM_FIELDS = ("id", "key", "mode", "uid", "gid", "cuid", "cgid", "values", "pids", "otime", "ctime")


class Ipc:
    """The machine's System V IPC objects (all processes')."""

    def __init__(self) -> None:
        self.shm: dict[int, list] = {}        # shmid -> SHM_FIELDS
        self.sem: dict[int, list] = {}        # semid -> SEM_FIELDS
        self.undo: dict[int, dict] = {}       # pid -> {(semid, num): adjustment}
        self.seq = 0                          # bumped by every creation

    def new_id(self, table: dict[int, list]) -> int:
        used = {i % SEQ_MULTIPLIER for i in table}
        index = next(i for i in range(IPCMNI) if i not in used)
        ident = index + SEQ_MULTIPLIER * (self.seq % (1 << 16))
        self.seq += 1
        return ident

    def state(self) -> list:
        return [self.seq, [list(s) for s in self.shm.values()],
                [[*s[:7], list(s[7]), list(s[8]), *s[9:]] for s in self.sem.values()],
                sorted([pid, semid, num, adj] for pid, adjs in self.undo.items()
                       for (semid, num), adj in adjs.items())]

    def load_state(self, state: list) -> None:
        self.seq, shm, sem, undo = state
        self.shm = {s[0]: list(s) for s in shm}
        self.sem = {s[0]: [*s[:7], list(s[7]), list(s[8]), *s[9:]] for s in sem}
        self.undo = {}
        for pid, semid, num, adj in undo:
            self.undo.setdefault(pid, {})[(semid, num)] = adj

    # -- what the kernel tells -------------------------------------------------------

    def segments_gone(self, objects) -> None:
        """Segments removed (IPC_RMID) whose object is gone (no attachment left) are forgotten."""
        for shmid in [i for i, s in self.shm.items() if int(s[7][len(PREFIX):]) not in objects]:
            del self.shm[shmid]

    def process_exited(self, k, pid: int) -> None:
        """``pid`` ended: its SEM_UNDO adjustments apply (clamped to 0..SEMVMX)."""
        adjs = self.undo.pop(pid, None)
        if not adjs:
            return
        for (semid, num), adj in sorted(adjs.items()):
            s = self.sem.get(semid)
            if s is not None and num < len(s[7]):
                s[7][num] = max(0, min(SEMVMX, s[7][num] + adj))
                s[8][num] = pid
                _changed(k, semid)


# -- permissions and shapes ---------------------------------------------------------------

def _may(k, entry: list, want: int) -> bool:
    """ipcperms: ``want`` (4 read, 2 write, 6 both) allowed to the caller by ``entry``'s mode."""
    euid, egid = k.proc.creds[1], k.proc.creds[4]
    if euid == 0:
        return True
    mode = entry[2]
    if euid in (entry[3], entry[5]):
        granted = mode >> 6
    elif egid in (entry[4], entry[6]) or entry[4] in k.proc.groups:
        granted = mode >> 3
    else:
        granted = mode
    return granted & want == want


def _owner(k, entry: list) -> bool:
    euid = k.proc.creds[1]
    return euid == 0 or euid in (entry[3], entry[5])


def _perm(entry: list, key: int, extra_mode: int = 0) -> bytes:
    return _PERM.pack(key, entry[3], entry[4], entry[5], entry[6], (entry[2] | extra_mode) & 0xFFFF, 0,
                      (entry[0] // SEQ_MULTIPLIER) & 0xFFFF, 0, 0, 0)


def _set_perm(k, entry: list, ptr: int, ctime_at: int) -> int:
    """IPC_SET: the owner gives the object a new uid, gid and mode bits."""
    if not _owner(k, entry):
        return -abi.EPERM
    _key, uid, gid, _cuid, _cgid, mode = _PERM.unpack(k.read(ptr, _PERM.size))[:6]
    entry[3], entry[4], entry[2], entry[ctime_at] = uid, gid, mode & 0o777, _now(k)
    return 0


def _now(k) -> int:
    return int(k.host("clock", 0)) // 10**9


def _lookup(k, table: dict[int, list], key: int, flags: int, make) -> int:
    """shmget/semget's common part: an existing object by key, or a new one."""
    if key != IPC_PRIVATE:
        found = next((e for e in table.values() if e[1] == key), None)
        if found is not None:
            if flags & IPC_CREAT and flags & IPC_EXCL:
                return -abi.EEXIST
            if not _may(k, found, (flags >> 6 | flags >> 3 | flags) & 6):
                return -abi.EACCES
            return make(found)
        if not flags & IPC_CREAT:
            return -abi.ENOENT
    return make(None)


# -- shared memory -----------------------------------------------------------------------

def sys_shmget(k, key, size, flags):
    key, flags, ipc = s32(key), s32(flags), k.ipc

    def make(found):
        if found is not None:
            return -abi.EINVAL if size > found[8] else found[0]
        if size < SHMMIN or size > SHMMAX:
            return -abi.EINVAL
        if len(ipc.shm) >= SHMMNI:
            return -abi.ENOSPC
        uid, gid = k.proc.creds[1], k.proc.creds[4]
        shmid = ipc.new_id(ipc.shm)
        ipc.shm[shmid] = [shmid, key, flags & 0o777, uid, gid, uid, gid, k.shm.new("sysv"), size, k.pid, 0,
                          0, 0, _now(k)]
        return shmid
    return _lookup(k, ipc.shm, key, flags, make)        # a removed one's key is IPC_PRIVATE


def _segment(k, shmid: int) -> list | None:
    return k.ipc.shm.get(s32(shmid)) if s32(shmid) >= 0 else None


def _removed(k, seg: list) -> bool:
    return not k.shm.get(seg[7]).keep


def attachments(k, seg: list) -> int:
    """shm_nattch: the mappings of the segment in every address space (each counted once)."""
    spaces = {id(p.space): p.space for p in k.processes.values()}
    return sum(1 for space in spaces.values() for vma in space.vmas if vma.file == seg[7])


def sys_shmat(k, shmid, addr, flags):
    seg = _segment(k, shmid)
    if seg is None:
        return -abi.EINVAL
    flags = s32(flags)
    prot, want = PROT_READ, 4
    if not flags & SHM_RDONLY:
        prot, want = prot | PROT_WRITE, 6
    if flags & SHM_EXEC:
        prot |= PROT_EXEC
    if not _may(k, seg, want):
        return -abi.EACCES
    length = page_up(seg[8])
    if addr:
        if addr & (PAGE - 1):
            if not flags & SHM_RND:
                return -abi.EINVAL
            addr &= ~(PAGE - 1)
        if addr + length > USER_END or addr < PAGE:
            return -abi.EINVAL
        if not flags & SHM_REMAP and not k.space.is_free(addr, addr + length):
            return -abi.EINVAL
    else:
        if flags & SHM_REMAP:
            return -abi.EINVAL
        from vmm.linux.loader import MMAP_BASE
        addr = k.space.find_gap(length, MMAP_BASE)
        if addr is None:
            return -abi.ENOMEM
    k.space.map(addr, length, prot, MAP_SHARED, file=seg[7], offset=0, name=f"/SYSV{seg[1] & 0xFFFFFFFF:08x}")
    if prot & PROT_EXEC:
        k.machine.code_changed()
    seg[10], seg[11] = k.pid, _now(k)
    return addr


def sys_shmdt(k, addr):
    if addr & (PAGE - 1):
        return -abi.EINVAL
    vma = k.space.find(addr)
    if vma is None or vma.start != addr or vma.offset != 0 or not any(s[7] == vma.file for s in k.ipc.shm.values()):
        return -abi.EINVAL
    seg = next(s for s in k.ipc.shm.values() if s[7] == vma.file)
    end = addr + page_up(seg[8])
    # Every mapping of the segment from addr on, as far as the segment reaches (do_shmdt).
    gone = [(v.start, v.end) for v in k.space.vmas if v.file == seg[7] and addr <= v.start < end]
    seg[10], seg[12] = k.pid, _now(k)
    for start, stop in gone:
        k.space.unmap(start, stop)
    return 0


def sys_shmctl(k, shmid, cmd, buf):
    cmd = s32(cmd) & ~IPC_64
    ipc = k.ipc
    if cmd == IPC_INFO:
        k.write(buf, struct.pack("<9Q", SHMMAX, SHMMIN, SHMMNI, SHMMNI, SHMALL, 0, 0, 0, 0))
        return _highest(ipc.shm)
    if cmd == SHM_INFO:
        rss = sum(len(k.shm.get(s[7]).pages) for s in ipc.shm.values())
        tot = sum(page_up(s[8]) // PAGE for s in ipc.shm.values())
        k.write(buf, struct.pack("<iiQQQQQ", len(ipc.shm), 0, tot, rss, 0, 0, 0))
        return _highest(ipc.shm)
    if cmd in (SHM_STAT, SHM_STAT_ANY):
        seg = next((s for s in ipc.shm.values() if s[0] % SEQ_MULTIPLIER == s32(shmid)), None)
        if seg is None:
            return -abi.EINVAL
        if cmd == SHM_STAT and not _may(k, seg, 4):
            return -abi.EACCES
        k.write(buf, _shmid_ds(k, seg))
        return seg[0]
    seg = _segment(k, shmid)
    if seg is None:
        return -abi.EINVAL
    if cmd == IPC_STAT:
        if not _may(k, seg, 4):
            return -abi.EACCES
        k.write(buf, _shmid_ds(k, seg))
        return 0
    if cmd == IPC_SET:
        return _set_perm(k, seg, buf, 13)
    if cmd == IPC_RMID:
        if not _owner(k, seg):
            return -abi.EPERM
        k.shm.get(seg[7]).keep = False
        seg[1] = IPC_PRIVATE                     # shmget by key no longer finds it
        seg[13] = _now(k)
        k.shared_released()
        return 0
    if cmd in (SHM_LOCK, SHM_UNLOCK):
        return 0 if _owner(k, seg) else -abi.EPERM
    return -abi.EINVAL


def _shmid_ds(k, seg: list) -> bytes:
    extra = SHM_DEST if _removed(k, seg) else 0
    return _SHMID_DS.pack(_perm(seg, seg[1], extra), seg[8], seg[11], seg[12], seg[13], seg[9], seg[10],
                          attachments(k, seg), 0, 0)


def _highest(table: dict[int, list]) -> int:
    return max((i % SEQ_MULTIPLIER for i in table), default=0)


# -- semaphores --------------------------------------------------------------------------

def sys_semget(k, key, nsems, flags):
    key, nsems, flags, ipc = s32(key), s32(nsems), s32(flags), k.ipc
    if nsems < 0 or nsems > SEMMSL:
        return -abi.EINVAL

    def make(found):
        if found is not None:
            return -abi.EINVAL if nsems > len(found[7]) else found[0]
        if nsems == 0:
            return -abi.EINVAL
        if len(ipc.sem) >= SEMMNI:
            return -abi.ENOSPC
        uid, gid = k.proc.creds[1], k.proc.creds[4]
        semid = ipc.new_id(ipc.sem)
        ipc.sem[semid] = [semid, key, flags & 0o777, uid, gid, uid, gid, [0] * nsems, [0] * nsems, 0, _now(k)]
        return semid
    return _lookup(k, ipc.sem, key, flags, make)


def _changed(k, semid: int) -> None:
    """The set's values changed, or it went: every operation waiting on it tries again."""
    for task in k.tasks.values():
        if task.state == WAIT and task.wait[0] == "sem" and task.wait[1] == semid:
            task.wait = ["retry"]


def sys_semop(k, semid, sops, nsops):
    return sys_semtimedop(k, semid, sops, nsops, 0)


def sys_semtimedop(k, semid, sops, nsops, timeout):
    if nsops < 1:
        return -abi.EINVAL
    if nsops > SEMOPM:
        return -abi.E2BIG
    semid = s32(semid)
    if semid < 0:
        return -abi.EINVAL
    raw = k.read(sops, nsops * _SEMBUF.size)
    ops = [_SEMBUF.unpack_from(raw, i * _SEMBUF.size) for i in range(nsops)]
    ns = None
    if timeout:
        ns = abi.read_timespec(k.read(timeout, 16))
        if ns is None:
            return -abi.EINVAL
    s = k.ipc.sem.get(semid)
    if s is None:
        return -abi.EINVAL
    values = s[7]
    if any(num >= len(values) for num, _op, _flg in ops):
        return -abi.EFBIG
    if not _may(k, s, 6 if any(op for _n, op, _f in ops) else 4):
        return -abi.EACCES
    trial = list(values)
    for num, op, flg in ops:
        if op == 0 and trial[num] != 0 or op < 0 and trial[num] + op < 0:
            if flg & IPC_NOWAIT or k.timed_out:
                return -abi.EAGAIN
            raise Blocked(["sem", semid, num, int(op == 0)], ns)
        trial[num] += op
        if trial[num] > SEMVMX:
            return -abi.ERANGE
    undo = k.ipc.undo.get(k.pid, {})
    adjusted = dict(undo)
    for num, op, flg in ops:
        if flg & SEM_UNDO and op:
            adjusted[(semid, num)] = adjusted.get((semid, num), 0) - op
            if not -SEMAEM - 1 <= adjusted[(semid, num)] <= SEMAEM:
                return -abi.ERANGE
    for num, _op, _flg in ops:
        s[8][num] = k.pid
    if adjusted:
        k.ipc.undo[k.pid] = {key: adj for key, adj in adjusted.items() if adj}
    s[7], s[9] = trial, _now(k)
    _changed(k, semid)
    return 0


def sys_semctl(k, semid, semnum, cmd, arg):
    cmd, semnum, ipc = s32(cmd) & ~IPC_64, s32(semnum), k.ipc
    if cmd in (IPC_INFO, SEM_INFO):
        used = len(ipc.sem)
        k.write(arg, struct.pack("<10i", 1024, SEMMNS, SEMMNI, SEMMSL, used if cmd == SEM_INFO else 0, SEMOPM,
                                 SEMMNI, SEMVMX, SEMAEM,
                                 sum(len(s[7]) for s in ipc.sem.values()) if cmd == SEM_INFO else 0))
        return _highest(ipc.sem)
    if cmd in (SEM_STAT, SEM_STAT_ANY):
        s = next((e for e in ipc.sem.values() if e[0] % SEQ_MULTIPLIER == s32(semid)), None)
        if s is None:
            return -abi.EINVAL
        if cmd == SEM_STAT and not _may(k, s, 4):
            return -abi.EACCES
        k.write(arg, _semid_ds(s))
        return s[0]
    s = ipc.sem.get(s32(semid)) if s32(semid) >= 0 else None
    if s is None:
        return -abi.EINVAL
    values = s[7]
    if cmd == IPC_RMID:
        if not _owner(k, s):
            return -abi.EPERM
        del ipc.sem[s[0]]
        _forget_undo(ipc, s[0], range(len(values)))
        for task in list(k.tasks.values()):      # operations waiting on it fail (EIDRM)
            if task.state == WAIT and task.wait[0] == "sem" and task.wait[1] == s[0]:
                k.wake(task, -EIDRM)
        return 0
    if cmd == IPC_SET:
        return _set_perm(k, s, arg, 10)
    if cmd == IPC_STAT:
        if not _may(k, s, 4):
            return -abi.EACCES
        k.write(arg, _semid_ds(s))
        return 0
    if cmd == GETALL:
        if not _may(k, s, 4):
            return -abi.EACCES
        k.write(arg, struct.pack(f"<{len(values)}H", *values))
        return 0
    if cmd == SETALL:
        if not _may(k, s, 2):
            return -abi.EACCES
        new = list(struct.unpack(f"<{len(values)}H", k.read(arg, 2 * len(values))))
        if any(v > SEMVMX for v in new):
            return -abi.ERANGE
        s[7], s[8], s[10] = new, [k.pid] * len(values), _now(k)
        _forget_undo(ipc, s[0], range(len(values)))
        _changed(k, s[0])
        return 0
    if not 0 <= semnum < len(values):
        return -abi.EINVAL
    if cmd in (GETVAL, GETPID, GETNCNT, GETZCNT):
        if not _may(k, s, 4):
            return -abi.EACCES
        if cmd == GETVAL:
            return values[semnum]
        if cmd == GETPID:
            return s[8][semnum]
        zero = int(cmd == GETZCNT)
        return sum(1 for t in k.tasks.values() if t.state == WAIT and t.wait[0] == "sem"
                   and t.wait[1] == s[0] and t.wait[2] == semnum and t.wait[3] == zero)
    if cmd == SETVAL:
        if not _may(k, s, 2):
            return -abi.EACCES
        value = s32(arg)
        if not 0 <= value <= SEMVMX:
            return -abi.ERANGE
        values[semnum], s[8][semnum], s[10] = value, k.pid, _now(k)
        _forget_undo(ipc, s[0], [semnum])
        _changed(k, s[0])
        return 0
    return -abi.EINVAL


def _forget_undo(ipc: Ipc, semid: int, nums) -> None:
    for adjs in ipc.undo.values():
        for num in nums:
            adjs.pop((semid, num), None)


def _semid_ds(s: list) -> bytes:
    return _SEMID_DS.pack(_perm(s, s[1]), s[9], 0, s[10], 0, len(s[7]), 0, 0)
