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
    "c3b800000000490f43c15b5dc30f1f0031c05b5dc30f1f0031c0c30f1f4400004157415641554154554889fd"
    "534889f34883ec7848833e0048c74424380000000048c74424400000000048c74424480000000048c7442450"
    "0000000048c7442458000000000f84f5010000488b4650483946480f83e7010000488d5424388b7660ff5310"
    "488b4424384883f8600f95c1483de40000000f95c284d1740a4883f8010f87b90100008b7368488d54244048"
    "89efff53108b7370488d5424484889efff5310488b4424384883f8010f863e0100004883f8600f84a4010000"
    "488b44244083f80f0f87760100004c63e848988b54837885d20f8865010000488b742448b901000000ba1000"
    "00004889dfe83efeffff4989c44d85e40f8442010000428b7cab78488d742460ff532085c00f852d0100004c"
    "8b7424604d85f60f881f010000488b43484d69f600ca9a3b4c037424684c89f64c8d2cc500000000488d5001"
    "4929c5488b4358488953484e8d2ce848b8b394d626e80b2e1149f7ee4c89f048c1f83f48c1fa1a4889d14829"
    "c14869c100ca9a3b4829c648837c243860751e48b8cff753e3a59bc42048f7ee4889f048c1f83f48c1fa0748"
    "29c24889d64989742408488d5424584889ef49890c248b7360ff5318488b4340f30f7e442440f30f7e080f16"
    "44244849c74520000000004d8975280f164c243849c7453000000000410f114d00410f114510eb5c0f1f4000"
    "8bb3b8000000488d5424504889efff53104c8b6424404981fcffffff7f77314c8b7424504c8b6c24484c8b44"
    "24384c3ba3d80000007319488b83d0000000428b3ca085ff795a662e0f1f84000000000031f64889efff5308"
    "4883c4785b5d415c415d415e415fc3660f1f84000000000048837c24480075d8488b742440b9010000004889"
    "df4531edba10000000e8aefcffff4989c4e96bfeffff660f1f4400004d85f674ab4d85c0746b4981fe000001"
    "00779d4c896424084189ff4d89ec4c896c24184d89f54c897424104c89442420eb12660f1f4400004d01f44d"
    "29f50f842e0200004c89e0ba001000004c89e64889df25ff0f00004829c24c39ea490f47d531c94989d6e835"
    "fcffff4885c075c8e93bffffff41ba000001004889e84c896424084d39d64c897424104d0f46d64531ff4c89"
    "4424184c89fd897c24204989c74d89d4eb16662e0f1f8400000000004c01f54c39e50f8381020000498d742d"
    "00b800100000b9010000004889df4889f281e2ff0f00004829d04c89e24829ea4839d0480f46d04989d6e8b1"
    "fbffff4885c075bc4c89f84989ef4c8b6424084c8b7424104c8b4424188b7c24204889c54d85ff0f8497feff"
    "ff488bb3e80000004c894424084a8d043e483983f00000000f827afeffff4803b3e0000000b9400000004c89"
    "faff93c000000048894424604885c00f8e57feffff4c897424184d89ef4c8b8be80000004c896c24204c038b"
    "e00000004989c54889e84c896424104c89fd4d89cc4989c70f1f8400000000004889e841b8001000004889ee"
    "4889df25ff0f0000b9010000004929c04d39e84d0f47c54c89c24d89c6e8e2faffff31d2410fb60c14880c10"
    "4883c2014939d675ef4c01f54d01f44d29f575b44c8b6424104c8b7424184c89fd4c8b6c24204c8b44240848"
    "8b542460488b4b4866490f6ed066490f6edd488d410148894348488d04cd000000004829c8488b4b58488d04"
    "c1488b4b40f30f7e014c89702048895028660f6cc20f110066490f6ec4660f6cc30f114010488b8be8000000"
    "488948304d85c0750a4801ca488993e80000008b7360488d5424604889efff5318e946fdffff4c8b6c24184c"
    "8b7424104489ff48896c24284c8b8bf80000004d89ef4d89f54c89fd4d89cc4189ff660f1f4400004889e841"
    "b8001000004889ee4889df25ff0f00004929c04d39e84d0f47c531c94c89c24d89c6e8d5f9ffff31d20f1f00"
    "0fb60c1041880c144883c2014939d675ef4c01f54d01f44d29f575b44c8b4424204c8b7424104489ffb94040"
    "00004c8b6424084c8b6c24184c894424084c89f2488b6c2428488bb3f8000000ff93c80000004c8b44240848"
    "85c048894424604889c20f8fc0feffffe973fcffff4c89f84c8b6424084989ef8b7c24204c8b7424104c8b44"
    "24184889c5e9bbfdffff"
)
FASTSYS_ENTRY = 208                    # vmrr_fast_syscall
LOG_CAPACITY = 4096
DATA_CAPACITY = 1 << 20                # bytes received natively between two drains
SCRATCH = 1 << 16                      # a native read or write moves at most this much
NR_READ, NR_WRITE, NR_GETTIMEOFDAY, NR_CLOCK_GETTIME = 0, 1, 96, 228


class _Logged(ctypes.Structure):
    _fields_ = [("icount", ctypes.c_uint64), ("nr", ctypes.c_uint64), ("a0", ctypes.c_uint64),
                ("a1", ctypes.c_uint64), ("a2", ctypes.c_uint64), ("value", ctypes.c_int64),
                ("data", ctypes.c_uint64)]


class _State(ctypes.Structure):
    _fields_ = [("enabled", ctypes.c_uint64), ("slow", ctypes.c_void_p), ("reg_read", ctypes.c_void_p),
                ("reg_write", ctypes.c_void_p), ("clock_gettime", ctypes.c_void_p),
                ("ram", ctypes.c_void_p), ("ram_size", ctypes.c_uint64), ("root", ctypes.c_uint64),
                ("icount", ctypes.c_void_p), ("n", ctypes.c_uint64), ("cap", ctypes.c_uint64),
                ("log", ctypes.c_void_p), ("reg_rax", ctypes.c_int64), ("reg_rdi", ctypes.c_int64),
                ("reg_rsi", ctypes.c_int64), ("clocks", ctypes.c_int32 * 16), ("reg_rdx", ctypes.c_int64),
                ("recv", ctypes.c_void_p), ("send", ctypes.c_void_p), ("sockets", ctypes.c_void_p),
                ("nsockets", ctypes.c_uint64), ("data", ctypes.c_void_p), ("data_used", ctypes.c_uint64),
                ("data_cap", ctypes.c_uint64), ("scratch", ctypes.c_void_p)]


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
        self.sockets_version = -1              # the FileTable version the socket table shows
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
                            ctypes.addressof(self._scratch))
        self.user_data = ctypes.addressof(self.state)

    def set_sockets(self, table: dict[int, int], version: int) -> None:
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
