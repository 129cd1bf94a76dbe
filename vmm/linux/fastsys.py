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
    "c3b800000000490f43c15b5dc30f1f0031c05b5dc30f1f0031c0c30f1f4400004157415641554989fd415455"
    "534889f34881ec880000008bb6000100004c8d642460488d6c246848c74424380000000048c7442440000000"
    "004c89e248c74424480000000048c74424500000000048c74424580000000048c74424600000000048c74424"
    "6800000000ff53108bb3080100004889ea4c89efff53104883442460024c89e24c89ef8bb310010000ff5318"
    "8bb3180100004889ea4c89efff531848833b000f84ef010000488b4350483943480f83e1010000488d542438"
    "8b73604c89efff5310488b4424384883f8600f95c1483de40000000f95c284d1740a4883f8010f87b0010000"
    "8b7368488d5424404c89efff53108b7370488d5424484c89efff5310488b4424384883f8010f863d01000048"
    "83f8600f849b010000488b44244083f80f0f876d0100004c63e048988b54837885d20f885c010000488b7424"
    "48b901000000ba100000004889dfe8ddfdffff4889c54885ed0f8439010000428b7ca378488d742470ff5320"
    "85c00f85240100004c8b7424704d85f60f8816010000488b43484d69f600ca9a3b4c037424784c89f64c8d24"
    "c500000000488d50014929c4488b4358488953484e8d24e048b8b394d626e80b2e1149f7ee4c89f048c1f83f"
    "48c1fa1a4889d14829c14869c100ca9a3b4829c648837c243860751e48b8cff753e3a59bc42048f7ee4889f0"
    "48c1f83f48c1fa074829c24889d648897508488d5424584c89ef48894d008b7360ff5318488b4340f30f7e44"
    "2440f30f7e080f164424484d8974242849c7442420000000000f164c2438410f1144241049c7442430000000"
    "00410f110c24eb508bb3b8000000488d5424504c89efff5310488b6c24404881fdffffff7f77294c8b742450"
    "4c8b6424484c8b442438483babd80000007311488b83d00000008b3ca885ff79530f1f0031f64c89efff5308"
    "4881c4880000005b5d415c415d415e415fc3660f1f44000048837c24480075d8488b742440b9010000004889"
    "df4531e4ba10000000e856fcffff4889c5e974feffff660f1f4400004d85f674ab4d85c0746b4981fe000001"
    "00779d48896c24084189ff4c89e54c896424184d89f44c897424104c89442420eb12660f1f4400004c01f54d"
    "29f40f84260200004889e8ba001000004889ee4889df25ff0f00004829c24c39e2490f47d431c94989d6e8dd"
    "fbffff4885c075c8e93bffffff41ba000001004c89e848896c24084d39d64c897424104d0f46d64531ff4c89"
    "4424184d89fd897c24204989c74c89d5eb0e66904d01f54939ed0f83790200004b8d342cb800100000b90100"
    "00004889df4889f281e2ff0f00004829d04889ea4c29ea4839d0480f46d04989d6e862fbffff4885c075bd4c"
    "89f84d89ef488b6c24084c8b7424104c8b4424188b7c24204989c54d85ff0f84a0feffff488bb3e80000004c"
    "894424084a8d043e483983f00000000f8283feffff4803b3e0000000b9400000004c89faff93c00000004889"
    "4424704885c00f8e60feffff4c897424184c8b8be80000004d89ef4989c54c038be000000048896c24104c89"
    "e54c896424204d89cc0f1f80000000004889e841b8001000004889ee4889df25ff0f0000b9010000004929c0"
    "4d39e84d0f47c54c89c24d89c6e89afaffff31d20f1f840000000000410fb60c14880c104883c2014939d675"
    "ef4c01f54d01f44d29f575ac488b6c24104c8b7424184d89fd4c8b6424204c8b442408488b542470488b4b48"
    "66490f6ed066490f6edc488d410148894348488d04cd000000004829c8488b4b58488d04c1488b4b40f30f7e"
    "014c89702048895028660f6cc20f110066480f6ec5660f6cc30f114010488b8be8000000488948304d85c075"
    "0a4801ca488993e80000008b7360488d5424704c89efff5318e94efdffff4c8b6424184c8b7424104c896c24"
    "284c8b8bf80000004c89e54d89f54d89cc0f1f80000000004889e841b8001000004889ee4889df25ff0f0000"
    "4929c04d39e84d0f47c531c94c89c24d89c6e88df9ffff31d20f1f000fb60c1041880c144883c2014939d675"
    "ef4c01f54d01f44d29f575b44c8b4424204c8b7424104489ffb940400000488b6c24084c8b6424184c894424"
    "084c89f24c8b6c2428488bb3f8000000ff93c80000004c8b4424084885c048894424704889c20f8fc8feffff"
    "e983fcffff4c89f8488b6c24084d89ef8b7c24204c8b7424104c8b4424184989c5e9c2fdffff"
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
                ("data_cap", ctypes.c_uint64), ("scratch", ctypes.c_void_p), ("reg_rip", ctypes.c_int64),
                ("reg_rflags", ctypes.c_int64), ("reg_rcx", ctypes.c_int64), ("reg_r11", ctypes.c_int64)]


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
