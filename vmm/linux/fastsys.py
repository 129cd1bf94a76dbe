"""The native fast path for a recorded Linux program's hottest system calls
(vmm/linux/fastsys_native.c).

Per request a server reads the clock (redis: twice), reads its socket and writes it;
each call through Python costs 13-26 µs: a ctypes call into the interpreter, the
dispatcher, a host call, guest memory, the log. ``FastSyscalls`` installs a native
SYSCALL hook that answers gettimeofday and clock_gettime, and read and write on a plain
stream socket that has data or room now, itself, and hands every other call to the
Python hook. What it did is kept in a native log that ``drain`` turns into the very
SYSCALL events the Python handler would have logged (same payload, same icount), so the
trace, replay and every tool see no difference; replay answers these calls in Python,
from the trace.

Python keeps the order: it drains the log before it logs anything else (the first thing
the Python hook does, after every slice, before an RDTSC answer), and it switches the
fast path off while a signal is pending, since its delivery happens on the way out of a
system call.
"""

from __future__ import annotations

import ctypes
import mmap
import struct
from pathlib import Path

from unicorn import x86_const as x86
from unicorn.unicorn_py3 import unicorn as _ucbind

from vmm.linux import host

NATIVE_SOURCE = Path(__file__).with_name("fastsys_native.c")
# gcc 12 -O2 build of fastsys_native.c (flags as vmm/icount.py's GCC_FLAGS; checked by
# tests/functional/test_linux_clocks.py when gcc is present).
FASTSYS_CODE = bytes.fromhex(
    "83f9014989f34819c04181e3ff0f00004883e0fe4c01da4883c0074881fa001000000f87a0000000554989f8"
    "4889f7534889f348c1eb2f0f8583000000498b7038498b58304189ca48bd00f0ffffffff0f00b92700000048"
    "8d96001000004839d3725d4889fa4d8b482848d3ea81e2ff010000498d14d1488b14324889c64821d64839c6"
    "753a4889d683e9094821ee83f90375c34885d2780831c04183e2017519488d86001000004909f34d01d94839"
    "c3b800000000490f43c15b5dc30f1f0031c05b5dc30f1f0031c0c30f1f440000415741564155415455534883"
    "ec0848893c244885c9747d4889f54989d54989cf4589c641bc001000000f1f80000000004889e84c89e3488b"
    "3c244489f125ff0f00004889ee4829c34c39fb490f47df4889dae8d9feffff31d2eb170f1f440000410fb64c"
    "1500880c104883c2014839d374174585f675e90fb60c1041884c15004883c2014839d375e94801dd4901dd49"
    "29df759c4883c4085b5d415c415d415e415fc366662e0f1f8400000000006690415741564989f64155415455"
    "534889fb4881ec880000008bb6000100004c8d642448488d6c245048c74424200000000048c7442428000000"
    "004c89e248c74424300000000048c74424380000000048c74424400000000048c74424480000000048c74424"
    "500000000041ff5610418bb6080100004889ea4889df41ff56104883442448024c89e24889df418bb6100100"
    "0041ff5618418bb6180100004889ea4889df41ff561849833e000f8418020000498b4650493946480f830a02"
    "0000488d542420418b76604889df41ff5610488b6c24204883fd600f95c24881fde40000000f95c084c2740a"
    "4883fd010f87d60100004983be20010000000f8570010000418b7668488d5424284889df41ff5610418b7670"
    "488d5424304889df41ff5610488b4424204883f8010f86b90100004883f8600f8477020000488b44242883f8"
    "0f0f87810100004c63e04898418b54867885d20f886f010000488b742430b901000000ba100000004c89f7e8"
    "10fdffff4889c54885ed0f844c010000438b7ca678488d74247041ff562085c00f85360100004c8b6c24704d"
    "85ed0f8828010000498b46484d69ed00ca9a3b4c036c24784c89ee4c8d24c500000000488d50014929c4498b"
    "4658498956484e8d24e048b8b394d626e80b2e1149f7ed4c89e848c1f83f48c1fa1a4889d14829c14869c100"
    "ca9a3b4829c648837c242060751e48b8cff753e3a59bc42048f7ee4889f048c1f83f48c1fa074829c24889d6"
    "48897508488d5424404889df48894d00418b766041ff5618498b4640f30f7e442428f30f7e080f164424304d"
    "896c242849c7442420000000000f164c2420410f1144241049c744243000000000410f110c24eb6148c74424"
    "5800000000498b863001000048c74424600000000048c74424680000000048c744247000000000493b863801"
    "00007324488d14c5000000004829c2498b86280100004c8d24d0493b6c24080f841b0100000f1f0031f64889"
    "df41ff56084881c4880000005b5d415c415d415e415fc30f1f440000418bb6b8000000488d5424384889df41"
    "ff56104c8b7c24284981ffffffff7f77bf488b4c24204c8b6c24384c8b64243048894c24104d3bbed8000000"
    "73a2498b86d0000000428b04b88944241c85c0788f4d85ed748a4885c90f848f0100004981fd000001000f87"
    "74ffffff4d89e84c89e5eb190f1f4000488b14244c8b4424084801d54929d00f84b70200004889e8ba001000"
    "004889ee4c89f725ff0f00004c894424084829c24c39c2490f47d031c948891424e8defaffff4885c075b9e9"
    "1cffffff0f1f400048837c2430000f850cffffff488b742428b9010000004c89f74531e4ba10000000e8aafa"
    "ffff4889c5e995fdffff6690498b4640488b00493904240f85d7feffff418b7668488d5424584889df41ff56"
    "10418b7670488d5424604889df41ff5610488b74245849397424100f85a7feffff488b44246049394424180f"
    "8597feffff4883fd010f86390200004883fd600f84e7020000b901000000ba100000004889c64c89f7e826fa"
    "ffff4889c14885c00f8462feffff48beb394d626e80b2e11498b7c24284889f848c1ff3f48f7ee4889d048c1"
    "f81a4829f8488901498b7c24284889f848f7ee4889d04889fa48c1fa3f48c1f81a4829d04869d000ca9a3b48"
    "89f84829d048894108488d542470418b76604889df41ff56184983863001000001e9fbfdffffbd0000010049"
    "39ed490f46ed48892c2431edeb17660f1f440000488b542408488b04244801d54839c57342498d342cba0010"
    "0000b9010000004c89f74889f025ff0f00004829c2488b04244829e84839c2480f47d04889542408e84bf9ff"
    "ff4885c075b64885ed0f8485fdffff498bb6e8000000488d443500493986f00000000f826cfdffff8b7c241c"
    "4903b6e0000000b9400000004889ea41ff96c000000048894424704885c00f8e44fdffff498b96e800000048"
    "89c14c89e64c89f7490396e000000041b801000000e8aaf9ffff488b542470498b4e48488b7c241066490f6e"
    "d4488d410166480f6edf49894648488d04cd000000004829c8498b4e58488d04c1498b4e40f30f7e014c8968"
    "2048895028660f6cc30f110066490f6ec7660f6cc20f114010498b8ee8000000488948304885ff750a4801d1"
    "49898ee8000000418b7660488d5424704889df41ff5618e9a5fcffff498b96f80000004531c04c89e94c89e6"
    "4c89f7e80cf9ffff4c89ea8b7c241c498bb6f8000000b94040000041ff96c800000048894424704889c24885"
    "c00f8f3cffffffe954fcffff418bb6b8000000488d5424684889df41ff56104c8b7c24684d397c24200f8531"
    "fcffff488b442458493b86d80000000f831ffcffff498b96d0000000833c82000f880efcffff4c8b6c246048"
    "85ed0f85b9000000498b44242848894424084885c00f84ee0000004989c04c89edeb104c8b04244c01fd4d29"
    "f80f84d60000004889e841bf001000004889ee4c89f725ff0f0000b9010000004c8904244929c74d39c74d0f"
    "47f84c89fae85ef7ffff4885c075bce99cfbffff4885c00f8593fbffffb901000000ba100000004c89f7e839"
    "f7ffff4889c14885c00f8475fbffff498b442428be00ca9a3b489948f7fe488901498b442428489948f7febe"
    "e80300004889d0489948f7fee934fdffff4d85ff7512eb630f1f8400000000004901ed4929ef74534c89e8bd"
    "001000004c89ee4c89f725ff0f00004829c54c39fd490f47ef31c94889eae8c1f6ffff4885c075cce9fffaff"
    "ff488b4c2408498b5424304c89ee4c89f74903964001000041b801000000e865f7ffff418b7660498d542428"
    "4889df41ff5618e9c9fcffff"
)
FASTSYS_ENTRY = 384                    # vmrr_fast_syscall
LOG_CAPACITY = 4096
QUEUE_CAPACITY = 1024                  # recorded calls queued for the replay fast path
QUEUE_DATA = 4 << 20                   # bytes of their reads
DATA_CAPACITY = 1 << 20                # bytes received natively between two drains
SCRATCH = 1 << 16                      # a native read or write moves at most this much
NR_READ, NR_WRITE, NR_GETTIMEOFDAY, NR_CLOCK_GETTIME = 0, 1, 96, 228
VALID_CLOCKS = frozenset({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11})     # time_calls.VALID_CLOCKS


class _Logged(ctypes.Structure):
    _fields_ = [("icount", ctypes.c_uint64), ("nr", ctypes.c_uint64), ("a0", ctypes.c_uint64),
                ("a1", ctypes.c_uint64), ("a2", ctypes.c_uint64), ("value", ctypes.c_int64),
                ("data", ctypes.c_uint64)]


# A queued call as the native hook reads it: _Logged's fields, packed in one call.
_QUEUED = struct.Struct("<QQQQQqQ")
assert _QUEUED.size == ctypes.sizeof(_Logged)


class _State(ctypes.Structure):
    _fields_ = [("enabled", ctypes.c_uint64), ("slow", ctypes.c_void_p), ("reg_read", ctypes.c_void_p),
                ("reg_write", ctypes.c_void_p), ("clock_gettime", ctypes.c_void_p),
                ("ram", ctypes.c_void_p), ("ram_size", ctypes.c_uint64), ("root", ctypes.c_uint64),
                ("icount", ctypes.c_void_p), ("n", ctypes.c_uint64), ("cap", ctypes.c_uint64),
                ("log", ctypes.c_void_p), ("reg_rax", ctypes.c_int64), ("reg_rdi", ctypes.c_int64),
                ("reg_rsi", ctypes.c_int64), ("clocks", ctypes.c_int32 * 16), ("reg_rdx", ctypes.c_int64),
                ("recv", ctypes.c_void_p), ("send", ctypes.c_void_p), ("sockets", ctypes.c_void_p),
                ("nsockets", ctypes.c_uint64), ("data", ctypes.c_void_p), ("data_used", ctypes.c_uint64),
                ("data_cap", ctypes.c_uint64), ("scratch", ctypes.c_void_p), ("reg_rip", ctypes.c_int64),
                ("reg_rflags", ctypes.c_int64), ("reg_rcx", ctypes.c_int64), ("reg_r11", ctypes.c_int64),
                ("replay", ctypes.c_uint64), ("queue", ctypes.c_void_p), ("qhead", ctypes.c_uint64),
                ("qlen", ctypes.c_uint64), ("qdata", ctypes.c_void_p)]


def _libc(name: str) -> int | None:
    try:
        return ctypes.cast(getattr(ctypes.CDLL(None), name), ctypes.c_void_p).value
    except (OSError, AttributeError):
        return None


class FastSyscalls:
    """The native SYSCALL hook of one recording: ``hook`` and ``user_data`` for uc_hook_add.

    Args:
        uc: the engine.
        slow: the Python SYSCALL hook (a ctypes callback the caller keeps alive).
        ram_address, ram_size: guest RAM on the host.
        root: guest-physical address of the page tables' root.
        icount_address: where the instruction counter keeps its icount.
    """

    def __init__(self, uc, slow, ram_address: int, ram_size: int, root: int, icount_address: int) -> None:
        clock_gettime, recv, send = _libc("clock_gettime"), _libc("recv"), _libc("send")
        if None in (clock_gettime, recv, send):
            raise OSError("libc's clock_gettime, recv or send is not reachable")
        self._page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        self._page.write(FASTSYS_CODE)
        self.hook = ctypes.addressof(ctypes.c_char.from_buffer(self._page)) + FASTSYS_ENTRY
        self._log = (_Logged * LOG_CAPACITY)()
        self._data = (ctypes.c_uint8 * DATA_CAPACITY)()
        self._scratch = (ctypes.c_uint8 * SCRATCH)()
        self._sockets = (ctypes.c_int32 * 0)()
        self.sockets_version: object = None     # which process's FileTable version the socket table shows
        clocks = (ctypes.c_int32 * 16)(*([-1] * 16))
        for guest, host_clock in host.CLOCKS.items():
            if guest not in (2, 3):            # CPU-time clocks: Python's, like every rare case
                clocks[guest] = host_clock
        self.state = _State(0, ctypes.cast(slow, ctypes.c_void_p).value,
                            ctypes.cast(_ucbind.uclib.uc_reg_read, ctypes.c_void_p).value,
                            ctypes.cast(_ucbind.uclib.uc_reg_write, ctypes.c_void_p).value,
                            clock_gettime, ram_address, ram_size, root, icount_address, 0,
                            LOG_CAPACITY, ctypes.addressof(self._log), x86.UC_X86_REG_RAX,
                            x86.UC_X86_REG_RDI, x86.UC_X86_REG_RSI, clocks, x86.UC_X86_REG_RDX,
                            recv, send, 0, 0, ctypes.addressof(self._data), 0, DATA_CAPACITY,
                            ctypes.addressof(self._scratch), x86.UC_X86_REG_RIP, x86.UC_X86_REG_RFLAGS,
                            x86.UC_X86_REG_RCX, x86.UC_X86_REG_R11)
        self.user_data = ctypes.addressof(self.state)

    def set_sockets(self, table: dict[int, int], version: object) -> None:
        """Which guest descriptors are plain stream sockets, and their host descriptors."""
        size = max(table, default=-1) + 1
        sockets = (ctypes.c_int32 * size)(*([-1] * size))
        for fd, host_fd in table.items():
            sockets[fd] = host_fd
        self._sockets = sockets
        self.state.sockets = ctypes.addressof(sockets) if size else 0
        self.state.nsockets = size
        self.sockets_version = version

    def set_enabled(self, on: bool) -> None:
        self.state.enabled = 1 if on else 0

    # -- replay ----------------------------------------------------------------------

    def start_replay(self) -> None:
        """Answer from recorded calls (``queue``) instead of the host."""
        self._queue = (_Logged * QUEUE_CAPACITY)()
        self._qdata = (ctypes.c_uint8 * QUEUE_DATA)()
        state = self.state
        state.replay, state.queue, state.qdata = 1, ctypes.addressof(self._queue), ctypes.addressof(self._qdata)
        state.qhead = state.qlen = 0

    def queue(self, events) -> int:
        """Queue recorded SYSCALL events (in trace order) that the native hook can answer,
        up to the first it cannot: read and write on a socket with bytes moved, and clock
        reads. Returns how many were queued; the queue starts over.

        The events passed ``check_syscall`` when they were read (arguments are register
        values, paths or None; answers are [op, value] pairs); what a queued call needs
        beyond that is checked here. One ``pack_into`` an entry: this runs for every call
        a server's replay answers natively."""
        state, queue = self.state, self._queue
        data = ctypes.addressof(self._qdata)
        pack = _QUEUED.pack_into
        n = used = 0
        for event in events:
            if n >= QUEUE_CAPACITY:
                break
            _tid, nr, args, ret, answers = event.payload
            if len(answers) != 1 or type(ret) is not int:
                break
            kind, value = answers[0]
            if len(args) == 3:
                a0, a1, a2 = args
            elif len(args) == 2:
                (a0, a1), a2 = args, 0
            else:
                break
            if type(a0) is not int or type(a1) is not int or type(a2) is not int:
                break
            if nr == NR_READ:
                if not (kind == "recv" and type(value) is bytes and len(args) == 3
                        and 0 < ret == len(value) <= a2 and used + ret <= QUEUE_DATA):
                    break
                ctypes.memmove(data + used, value, ret)
                pack(queue, n * _QUEUED.size, event.icount, nr, a0, a1, a2, ret, used)
                used += ret
            elif nr == NR_WRITE:
                if not (kind == "send" and type(value) is int and len(args) == 3 and 0 < ret == value <= a2
                        and ret < 1 << 62):
                    break
                pack(queue, n * _QUEUED.size, event.icount, nr, a0, a1, a2, ret, 0)
            elif nr == NR_GETTIMEOFDAY or nr == NR_CLOCK_GETTIME:
                if not (kind == "clock" and type(value) is int and 0 <= value < 1 << 62 and ret == 0
                        and len(args) == 2 and (a1 == 0 if nr == NR_GETTIMEOFDAY else a0 in VALID_CLOCKS)):
                    break
                pack(queue, n * _QUEUED.size, event.icount, nr, a0, a1, 0, value, 0)
            else:
                break
            n += 1
        state.qhead, state.qlen = 0, n
        return n

    def drain(self, tid: int) -> list[tuple[int, list]]:
        """The calls answered natively since the last drain, as (icount, SYSCALL payload):
        what the Python handlers would have logged."""
        state = self.state
        n = state.n
        if not n:
            return []
        data = bytes(self._data[:state.data_used]) if state.data_used else b""
        state.n = state.data_used = 0
        out = []
        for e in self._log[:n]:
            nr = e.nr
            if nr == NR_READ:
                got = e.value
                out.append((e.icount, [tid, 0, [e.a0, e.a1, e.a2], got, [["recv", data[e.data:e.data + got]]]]))
            elif nr == NR_WRITE:
                out.append((e.icount, [tid, 1, [e.a0, e.a1, e.a2], e.value, [["send", e.value]]]))
            else:
                out.append((e.icount, [tid, nr, [e.a0, e.a1], 0, [["clock", e.value]]]))
        return out
