"""The native fast path for a recorded Linux program's clock reads (vmm/linux/fastsys_native.c).

A server reads the clock around every request (redis: gettimeofday twice a request),
and each read through Python costs ~13 µs: a ctypes call into the interpreter, the
dispatcher, a host call, a guest write, the log. ``FastSyscalls`` installs a native
SYSCALL hook that answers gettimeofday and clock_gettime itself when the answer is a
plain 16-byte store into a present, writable data page, and hands every other call to
the Python hook. What it did is kept in a native log that ``drain`` turns into the very
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
# tests/unit/test_fastsys.py when gcc is present).
FASTSYS_CODE = bytes.fromhex(
    "4989f14181e1ff0f0000498d4110483d001000000f87860000004889f048c1e82f757d488b57384c8b5730b9"
    "2700000049bb00f0ffffffff0f00488d82001000004939c2725a4889f04c8b472848d3e825ff010000498d04"
    "c0488b04104889c283e2074883fa0775374889c283e9094c21da83f90375c331c94885c079144909d1488d82"
    "001000004d01c84939c2490f43c84889c8c3662e0f1f84000000000031c94889c8c3662e0f1f840000000000"
    "415641554154554889fd534889f34883ec3048833e0048c704240000000048c74424080000000048c7442410"
    "0000000048c7442418000000007425488b465048394648731b8b76604889e2ff5310488b04244883f8607420"
    "483de4000000741831f64889efff53084883c4305b5d415c415d415ec30f1f008b7368488d5424084889efff"
    "53108b7370488d5424104889efff531048833c24600f84e1000000488b44240883f80f77b74c63e848988b54"
    "837885d278aa488b7424104889dfe88dfeffff4989c44d85e47495428b7cab78488d742420ff532085c07584"
    "4c8b6c24204d85ed0f8876ffffff488b43484d69ed00ca9a3b4c036c24284c89ee488d50014c8d3480488b43"
    "58488953484e8d34f048b8b394d626e80b2e1149f7ed4c89e848c1f83f48c1fa1a4889d14829c14869c100ca"
    "9a3b4829c648833c246074684989742408488d5424184889ef49890c248b7360ff5318488b4340f30f7e4424"
    "08f30f7e080f164424104d896e20410f1146100f160c24410f110ee9e8feffff48837c2410000f85d4feffff"
    "488b7424084889df4531ede8b4fdffff4989c4e922ffffff0f1f400048b8cff753e3a59bc42048f7ee4889f0"
    "48c1f83f48c1fa074829c24889d6e975ffffff"
)
FASTSYS_ENTRY = 176                    # vmrr_fast_syscall
LOG_CAPACITY = 4096
NR_GETTIMEOFDAY, NR_CLOCK_GETTIME = 96, 228


class _Logged(ctypes.Structure):
    _fields_ = [("icount", ctypes.c_uint64), ("nr", ctypes.c_uint64), ("a0", ctypes.c_uint64),
                ("a1", ctypes.c_uint64), ("ns", ctypes.c_int64)]


class _State(ctypes.Structure):
    _fields_ = [("enabled", ctypes.c_uint64), ("slow", ctypes.c_void_p), ("reg_read", ctypes.c_void_p),
                ("reg_write", ctypes.c_void_p), ("clock_gettime", ctypes.c_void_p),
                ("ram", ctypes.c_void_p), ("ram_size", ctypes.c_uint64), ("root", ctypes.c_uint64),
                ("icount", ctypes.c_void_p), ("n", ctypes.c_uint64), ("cap", ctypes.c_uint64),
                ("log", ctypes.c_void_p), ("reg_rax", ctypes.c_int64), ("reg_rdi", ctypes.c_int64),
                ("reg_rsi", ctypes.c_int64), ("clocks", ctypes.c_int32 * 16)]


def _libc_clock_gettime() -> int | None:
    try:
        return ctypes.cast(ctypes.CDLL(None).clock_gettime, ctypes.c_void_p).value
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
        clock_gettime = _libc_clock_gettime()
        if clock_gettime is None:
            raise OSError("libc's clock_gettime is not reachable")
        self._page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        self._page.write(FASTSYS_CODE)
        self.hook = ctypes.addressof(ctypes.c_char.from_buffer(self._page)) + FASTSYS_ENTRY
        self._log = (_Logged * LOG_CAPACITY)()
        clocks = (ctypes.c_int32 * 16)(*([-1] * 16))
        for guest, host_clock in host.CLOCKS.items():
            if guest not in (2, 3):            # CPU-time clocks: Python's, like every rare case
                clocks[guest] = host_clock
        self.state = _State(0, ctypes.cast(slow, ctypes.c_void_p).value,
                            ctypes.cast(_ucbind.uclib.uc_reg_read, ctypes.c_void_p).value,
                            ctypes.cast(_ucbind.uclib.uc_reg_write, ctypes.c_void_p).value,
                            clock_gettime, ram_address, ram_size, root, icount_address, 0,
                            LOG_CAPACITY, ctypes.addressof(self._log), x86.UC_X86_REG_RAX,
                            x86.UC_X86_REG_RDI, x86.UC_X86_REG_RSI, clocks)
        self.user_data = ctypes.addressof(self.state)

    def set_enabled(self, on: bool) -> None:
        self.state.enabled = 1 if on else 0

    def drain(self, tid: int) -> list[tuple[int, list]]:
        """The calls answered natively since the last drain, as (icount, SYSCALL payload)."""
        n = self.state.n
        if not n:
            return []
        self.state.n = 0
        out = []
        for e in self._log[:n]:
            out.append((e.icount, [tid, e.nr, [e.a0, e.a1], 0, [["clock", e.ns]]]))
        return out
