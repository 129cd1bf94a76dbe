"""The exact instruction counter: counted per translated block, no Python on the hot path.

Unicorn has no instruction counter of its own; a native per-instruction code hook costs
~8x the speed of the emulator. So the counter counts whole *blocks* (Unicorn's
translation blocks) with a native ``UC_HOOK_BLOCK`` callback, and counts instruction by
instruction only where an exact position inside a block is needed. The native code
(``vmm/icount_native.c``, shipped as bytes in ``NATIVE_CODE``) shares one struct with
Python. Its semantics are those of a per-instruction counter, bit for bit:

* ``icount`` counts the instructions that have *begun*; the VM stops exactly at
  ``limit`` with RIP on the first instruction not run; ``last_pc`` is the address of
  the instruction last begun (the faulting one, after a fault); a faulting instruction
  is counted; each iteration of a ``rep`` string instruction counts as one.
* ``stop_soon()`` makes the VM stop before the next instruction begins.

**The block table.** A native ``UC_HOOK_EDGE_GENERATED`` callback runs every time
Unicorn translates a block and records its shape — (address, size in bytes,
instruction count), Unicorn's own TB information — in a four-way set-associative table
(a Fibonacci hash of the address picks the set), marked
*new*. The first time a new block is entered the block hook stops before it and Python
(``_classify``) reads the block's bytes and decodes them (capstone): a block is
*counted* (the block hook adds its instruction count at its start, and stops before it
if it would cross ``limit``), or *exact*: it contains, before its last instruction, an
instruction whose hook may read the icount or ask to stop (IN, OUT, INS, OUTS, RDTSC,
RDTSCP, SYSCALL, SYSENTER, CPUID: ``HOOKED_INSNS``), or its decoding disagrees with
Unicorn. An exact block gets a native per-instruction code hook over the part of its
address range no hook covers yet (``vmrr_range_hook``; added once, kept) and is
re-translated; such blocks count one instruction at a time, exactly as the whole VM
used to. Classifications are cached by the block's bytes, so a re-translation of
unchanged code costs a dictionary lookup.

**Every instruction is counted once.** Unicorn calls *every* code hook whose range
holds an instruction's address, so the exact ranges never overlap, and a counted block
that overlaps them (x86 blocks overlap: a jump into the middle of one starts another,
and a block ends after 512 instructions wherever that falls) adds at its start only the
instructions no range covers (``counted``); the range hooks count the others. It still
stops before it when *all* its instructions would cross the limit — its own are counted
before they run, so a hook in its middle could not stop it in time — and keeps its own
last instruction as ``last_pc``. It gets no range of its own: that would spread
per-instruction counting to every block overlapping it, and on through a hot loop.

**Invalidation.** Because every translation re-marks its entry *new* and Python then
looks at the block's current bytes, the table follows whatever Unicorn translates: guest
self-modifying code and loaders (Unicorn re-translates what was written), checkpoint
and time-travel restores (they call ``ctl_flush_tb``). One case it cannot see: with
paging, when a virtual address is mapped to other code, Unicorn translates new blocks
for the new physical page but keeps the old page's blocks, which run again, untranslated
and so unreported, if the old mapping comes back; the table, keyed by (virtual address,
size), then describes the other block. So whoever changes executable mappings (the
Linux personality after mmap, munmap, mprotect) calls ``InstructionCounter.invalidate()``:
it drops the table, the cached classifications, the range hooks and every translated
block. It may be called from inside a hook (a SYSCALL hook): the VM then stops before
the next instruction and the blocks are flushed before anything else runs.

Unicorn skips the edge hook until the first block of an engine has run; blocks it did
not report are counted from the decoding alone. Python never asks Unicorn for a block
(``UC_CTL_TB_REQUEST_CACHE`` outside ``emu_start`` translates with a stale exit address).

**The tail.** When the block hook stops before a block that would cross the limit,
``run`` adds code hooks over the uncovered parts of just that block for the few
instructions up to the limit, then removes them, drops every translated block holding
that code and lets the blocks classified meanwhile (Unicorn splits a block compiled
with hooks into shorter ones) be classified again: nothing the tail saw stays exact
after it, so slice ends in a hot loop do not leave it counted one instruction at a
time (sha256sum over 5 MB: 55 s, now 6 s). A live slice
(``run(exact=False)``) has no tail: its last block may finish past the limit, which
only bounds how late the run loop looks at the host. ``stop_soon`` is exact in both.

**Exact positions in callbacks.** A hook on an instruction in the middle of a block
only exists in exact blocks, where the icount is already exact; such an instruction at
the end of a counted block sees the block's full count, which is exact too. Faults and
exceptions in the middle of a counted block (UC_HOOK_INTR, an invalid instruction,
unmapped memory) abort it: ``sync_fault(rip)`` corrects the count from the block's
start count and the position of the faulting instruction.

**Debugger hooks.** Python code and memory hooks (time travel's breakpoints and
watchpoints) read the icount at every instruction or access: ``set_exact(True)``
switches the whole VM to the per-instruction counter (``vmrr_code_hook`` on every
address, Unicorn's TBs flushed) while they are installed. Register it *before* such
code hooks so that it runs first, as it always did.
"""

from __future__ import annotations

import ctypes
import mmap
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import capstone
from capstone import x86_const as cs_x86
from unicorn import UC_HOOK_BLOCK, UC_HOOK_CODE, UC_HOOK_EDGE_GENERATED, UC_PROT_EXEC, Uc, UcError
from unicorn import x86_const as x86
from unicorn.unicorn_py3 import unicorn as _ucbind

NO_LIMIT = (1 << 64) - 1
TABLE_SLOTS = 1 << 18                 # 4 MiB; WAYS entries a set (icount_native.c)
WAYS = 4
PAGE_SIZE = 4096

# Entry kinds and stop reasons: vmm/icount_native.c.
KIND_NEW, KIND_COUNTED, KIND_EXACT = 0, 1, 2
STOP_NONE, STOP_MISS, STOP_LIMIT, STOP_CODE = 0, 1, 2, 3
LAST_UNKNOWN = 0xFFFF                 # last_off of a block the edge hook classified
LAZY_PC = 1 << 63                     # last_pc: the start of such a block (its last is found here)
RANGES_OFF = (1 << 64) - 1            # nranges: too many ranges for the edge hook to check
RANGES_MAX = 256
LOG_MAX = 1 << 16
CELLS = 1 << 17                       # the ring of block cells (2 MiB; icount_native.c)
# Unicorn 2.1's struct hook (include/uc_priv.h): five ints, a bool, begin, end, then the
# callback and user_data.
_HOOK_CALLBACK_OFFSET = 40

# Instructions whose Unicorn hooks may read the icount or ask the VM to stop.
HOOKED_INSNS = frozenset({
    cs_x86.X86_INS_IN, cs_x86.X86_INS_OUT, cs_x86.X86_INS_INSB, cs_x86.X86_INS_INSW,
    cs_x86.X86_INS_INSD, cs_x86.X86_INS_OUTSB, cs_x86.X86_INS_OUTSW, cs_x86.X86_INS_OUTSD,
    cs_x86.X86_INS_RDTSC, cs_x86.X86_INS_RDTSCP, cs_x86.X86_INS_SYSCALL,
    cs_x86.X86_INS_SYSENTER, cs_x86.X86_INS_CPUID,
})

NATIVE_SOURCE = Path(__file__).with_name("icount_native.c")
# gcc 12 -O2 build of icount_native.c (see its header; make_native() rebuilds it and
# tests/unit/test_icount_blocks.py checks these bytes against it when gcc is present).
NATIVE_CODE = bytes.fromhex(
    "4883bf98000000004c8b8f900000004989f80f8490000000488b5748b92700000049ba00f0ffffffff0f0048"
    "c1e20c488d82001000004939c1723c4889f7498b808800000048d3ef81e7ff010000488d3cf8488b1417f6c2"
    "01741c83f90c7420f6c28075124c21d283e909488d82001000004939c173c431c0c3660f1f44000048b900f0"
    "ffffffff0f004821ca488d8a001000004801d031d24939c9480f42c2c30f1f800000000031c04c39ce73ca48"
    "8b87880000004881e600f0ffff4801f0c366662e0f1f8400000000000f1f400048837920004989f84889f775"
    "634c8b51484c8b492889d248b8157c4a7fb979379e4c31d6480faff048c1ee20482371304883e6fc48c1e605"
    "498d0431498db43180000000483b38742f4883c0204839c675f248c741580100000048897960488b41104c89"
    "c748895168ffe00f1f440000c30f1f8000000000440fb748084c39ca75c74439501475c10fb6700c4084f674"
    "c14c8b51084c8b094080fe0174124d39ca736d48c7415802000000ebad0f1f00440fb7580a0fb770104d01cb"
    "4d39da72374c894938488941404885f674a20fb7500e4c01ce4889f8488931480fbae83f4889d64801fa6683"
    "feff480f45c248894118c30f1f4400004883b9800000000074a14d39d172baeb9a0f1f80000000004c894938"
    "48894140c30f1f80000000004989f84889cf488b094189d1488b570848837920000f85d5000000534c8b5948"
    "4885d274094839320f84ca0000004889f24c8b512848b8157c4a7fb979379e4c31da480fafd048c1ea204823"
    "51304883e2fc48c1e205498d04124d8d9412800000004889c2483b30744e4883c0204939c275ef31d24c8b51"
    "504889570849393a0f84020100004885d274450fb6420c84c0743d488b394c8b51083c010f84860000004939"
    "fa737148c7415802000000eb270f1f80000000000fb758084139d975a94439581475a3ebac0f1f8000000000"
    "48c74158010000004489c8488971604c89c748894168488b41105bffe00f1f00c30f1f80000000000fb74208"
    "4439c80f8529ffffff44395a140f851fffffffe977ffffff0f1f400048897938488951405bc3660f1f440000"
    "440fb75a0a0fb742104901fb4d39da73174883b980000000000f8460ffffff4c39d70f8357ffffff48897938"
    "488951404885c074c30fb7520e4801f84889014889f04889d7480fbae83f4801f26683ffff480f45c2488941"
    "185bc30f1f440000488b81d80000004883c001488981d8000000482381d000000048c1e004480381c8000000"
    "48890848c7400800000000498902e9c7feffff9041574889f24989cb49b9157c4a7fb979379e415641554154"
    "55534883ec08488b2e488b71484c8b4128440fb7620a4889e889f74831f04c89e1490fafc148c1e820492343"
    "304883e0fc48c1e0054d8d14004d8d8400800000004d89d14c89d04889c3483b280f84950100004883c02049"
    "39c075eb498b4378498dba800000004883c001498943786641837908004c89cb74144d8d49204939f975ec83"
    "e00348c1e005498d1c02440fb76a080fb7c148892b8973144489e9c6430c00c1e11009c1894b08664585ed0f"
    "84ab0100004d8bb3b80000004d3bb3c00000000f83970100004983bb88000000000f8489010000498b8ba800"
    "00004883f9ff0f8478010000498d4424ff483dff0f00000f87670100004885c9742e498b83a00000004a8d74"
    "250031d20f1f4000483930730a483b68080f82410100004883c2014883c0104839d175e44889ee4c89dfe801"
    "fbffff4885c00f84200100004889ea41bf0010000081e2ff0f00004929d74c8d04104d39e70f825201000049"
    "83fc010f84a00000004d89e731d24c29fab80200000048bedfffffffffffedffeb4c660f1f440000410fb64c"
    "00fe80f90f754c488d48ff4c39f90f8338010000410fb64c00ff80f9340f863601000080f9a2752b4939c40f"
    "85a3000000498d4c24014883c2014939c4743e4889c8488d48fe4c39f972b10fb60a80f90f74b4488d4801eb"
    "dd0f1f00440fb768084d39ec0f855dfeffff3978140f8554feffff4983437801e985feffffc6430c01498b8b"
    "b0000000b8ffffffff49c1e60448be0000ffffffff00006689430e6644896b104a892c31498b4348498b93b8"
    "00000048c1e0104821f048c1e2044c09e04889441108498383b800000001660f1f440000498b53504885d274"
    "39488b0248895808498b83d80000004883c001498983d8000000492383d000000048c1e004490383c8000000"
    "4c891848c74008000000004889024883c4085b5d415c415d415e415fc34a8d743d004c89df4c890424e876f9"
    "ffff4c8b04244885c04889c20f859cfeffffeb8c0f1f40000fb64a0180f9340f87cafeffff480fa3ce0f83c5"
    "feffff80f9010f85e7feffff4c39e00f83defeffff4c39f87322410fb63c00488d48014080fff90f85a9feff"
    "ff4939cc0f84a0feffffe939ffffff900fb67a02ebdd662e0f1f84000000000048837958007523488b01483b"
    "410873204883c001488901488b41404885c0740680780c01740448897118c30f1f44000048c7415803000000"
    "ff61100f1f44000048837920007409c30f1f840000000000488379580075f0488b01483b410873204883c001"
    "488901488b41404885c0740680780c0174d148897118c30f1f44000048c7415803000000ff6110"
)
NATIVE_ENTRY = {"vmrr_block_hook": 208, "vmrr_block_hook_cell": 496, "vmrr_code_hook": 1792,
                "vmrr_edge_hook": 944, "vmrr_range_hook": 1856}
NATIVE_GCC = "12"                     # the gcc major version NATIVE_CODE was built with
GCC_FLAGS = ["-O2", "-fPIC", "-fno-asynchronous-unwind-tables", "-fno-stack-protector",
             "-fcf-protection=none", "-fno-jump-tables"]

_ARITH_FLAGS = 0x8D5                  # CF PF AF ZF SF OF
_CC_SRC_OFFSET: int | None = None


def _cc_src_offset() -> int:
    """Where CC_SRC lies in a Unicorn x86 CPU context (found once, by writing RFLAGS,
    which stores the arithmetic flags there, and looking for them)."""
    global _CC_SRC_OFFSET
    if _CC_SRC_OFFSET is None:
        from unicorn import UC_ARCH_X86, UC_MODE_64
        probe = Uc(UC_ARCH_X86, UC_MODE_64)
        values = (0x801 | 0x2, 0xC4 | 0x2, 0x10 | 0x2)
        blobs = []
        for value in values:
            probe.reg_write(x86.UC_X86_REG_RFLAGS, value)
            blobs.append(bytes(probe.context_save()))
        want = [v & _ARITH_FLAGS for v in values]
        found = [off for off in range(0, len(blobs[0]) - 8, 8)
                 if [int.from_bytes(b[off:off + 8], "little") for b in blobs] == want]
        if len(found) != 1:
            raise RuntimeError(f"cannot find CC_SRC in Unicorn's CPU context ({found})")
        _CC_SRC_OFFSET = found[0]
    return _CC_SRC_OFFSET


_CS = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)


def make_native(source: Path = NATIVE_SOURCE) -> tuple[bytes, dict[str, int]]:
    """Compile ``icount_native.c``: (the .text bytes, {function: offset}). Needs gcc and binutils."""
    with tempfile.TemporaryDirectory() as tmp:
        obj, binary = Path(tmp) / "n.o", Path(tmp) / "n.bin"
        subprocess.run(["gcc", *GCC_FLAGS, "-c", str(source), "-o", str(obj)], check=True,
                       capture_output=True, timeout=60)
        relocs = subprocess.run(["objdump", "-r", str(obj)], check=True, capture_output=True,
                                text=True).stdout
        if "R_X86_64" in relocs:
            raise RuntimeError(f"{source.name} needs relocations:\n{relocs}")
        subprocess.run(["objcopy", "-O", "binary", "-j", ".text", str(obj), str(binary)],
                       check=True, capture_output=True)
        symbols = subprocess.run(["nm", str(obj)], check=True, capture_output=True, text=True).stdout
        entries = {name: int(addr, 16) for addr, kind, name in
                   (line.split() for line in symbols.splitlines()) if kind == "T"}
        return binary.read_bytes(), entries


def have_toolchain() -> bool:
    """gcc (the version NATIVE_CODE was built with) and binutils are installed."""
    if not all(shutil.which(tool) for tool in ("gcc", "objcopy", "objdump", "nm")):
        return False
    version = subprocess.run(["gcc", "-dumpversion"], capture_output=True, text=True).stdout
    return version.split(".")[0].strip() == NATIVE_GCC


MAX_SHAPES = 1 << 18                 # decoded blocks kept (a few tens of MB at most)

class _Entry(ctypes.Structure):
    _fields_ = [("pc", ctypes.c_uint64), ("size", ctypes.c_uint16), ("icount", ctypes.c_uint16),
                ("kind", ctypes.c_uint8), ("pad", ctypes.c_uint8), ("last_off", ctypes.c_uint16),
                ("counted", ctypes.c_uint16), ("space", ctypes.c_uint32), ("pad2", ctypes.c_uint16)]


class _CounterState(ctypes.Structure):
    _fields_ = [
        ("icount", ctypes.c_uint64),
        ("limit", ctypes.c_uint64),
        ("emu_stop", ctypes.c_void_p),
        ("last_pc", ctypes.c_uint64),
        ("exact_all", ctypes.c_uint64),
        ("table", ctypes.c_void_p),
        ("mask", ctypes.c_uint64),
        ("block_base", ctypes.c_uint64),
        ("block", ctypes.c_void_p),
        ("space", ctypes.c_uint64),
        ("cell_slot", ctypes.c_void_p),
        ("stop_reason", ctypes.c_uint64),
        ("stop_pc", ctypes.c_uint64),
        ("stop_size", ctypes.c_uint64),
        ("unused2", ctypes.c_uint64),
        ("translations", ctypes.c_uint64),
        ("soft", ctypes.c_uint64),
        ("ram", ctypes.c_void_p),
        ("ram_size", ctypes.c_uint64),
        ("paging", ctypes.c_uint64),
        ("ranges", ctypes.c_void_p),
        ("nranges", ctypes.c_uint64),
        ("log", ctypes.c_void_p),
        ("nlog", ctypes.c_uint64),
        ("log_max", ctypes.c_uint64),
        ("cells", ctypes.c_void_p),
        ("cells_mask", ctypes.c_uint64),
        ("next_cell", ctypes.c_uint64),
    ]


class _Cell(ctypes.Structure):            # icount_native.c: a translated block's own cell
    _fields_ = [("s", ctypes.c_void_p), ("e", ctypes.c_void_p)]


@dataclass(frozen=True)
class BlockShape:
    """What decoding a block found: instruction offsets, and whether it must run exact."""
    offsets: tuple[int, ...]
    exact: bool


def decode_block(code: bytes, address: int, icount: int | None) -> BlockShape:
    """Decode one translated block; exact when a hooked instruction is not its last
    or when the decoding does not account for exactly ``icount`` instructions and all bytes."""
    offsets, ids, end = [], [], 0
    for insn in _CS.disasm(code, address):
        offsets.append(insn.address - address)
        ids.append(insn.id)
        end = insn.address - address + insn.size
    consistent = end == len(code) and (icount is None or icount == len(offsets)) and offsets
    hooked_inside = any(i in HOOKED_INSNS for i in ids[:-1])
    return BlockShape(tuple(offsets) or (0,), bool(hooked_inside or not consistent))


COUNTER_MODES = ("fast", "reference")


class InstructionCounter:
    """Counts every instruction a Unicorn engine begins, and stops it at a chosen icount.

    Args:
        uc: the engine to attach to. The counter lives as long as this object.
        mode: ``"fast"`` counts whole blocks (above); ``"reference"`` counts one
            instruction at a time with a native hook on every address and nothing else
            (no block hook, no block table, no classification, no ranges, no tails): the
            independent counter the fast one is checked against (``--counter reference``).
            Both give the same icount at every instruction, so a trace recorded with one
            replays with the other.

    Drive the engine with ``run`` (not ``uc.emu_start``): it classifies new blocks and
    runs the last instructions before a limit one at a time.
    """

    def __init__(self, uc: Uc, mode: str = "fast") -> None:
        if mode not in COUNTER_MODES:
            raise ValueError(f"counter mode {mode!r}: expected one of {', '.join(COUNTER_MODES)}")
        self.mode = mode
        self.uc = uc
        self._page = mmap.mmap(-1, mmap.PAGESIZE * (len(NATIVE_CODE) // mmap.PAGESIZE + 1),
                               prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        self._page.write(NATIVE_CODE)
        base = ctypes.addressof(ctypes.c_char.from_buffer(self._page))
        self._entry = {name: base + off for name, off in NATIVE_ENTRY.items()}
        self._table = (_Entry * TABLE_SLOTS)()
        stop_addr = ctypes.cast(_ucbind.uclib.uc_emu_stop, ctypes.c_void_p).value
        self._state = _CounterState(0, NO_LIMIT, stop_addr, 0, 0, ctypes.addressof(self._table),
                                    TABLE_SLOTS - 1)
        self._state_ptr = ctypes.cast(ctypes.pointer(self._state), ctypes.c_void_p)
        self._shapes: dict[tuple[int, bytes], BlockShape] = {}     # by (address, bytes), kept across invalidations
        self._current: dict[tuple[int, int, int], BlockShape] = {}  # by (address, size, space)
        self._by_page: dict[int, set[tuple[int, int, int]]] = {}      # page -> keys of _current on it
        self._ranges: dict[tuple[int, int], object] = {}          # exact ranges [lo, hi) -> hook
        self._tail: tuple[int, int, list, int] | None = None
        self._global_hook = None
        self._running = False                  # inside emu_start (a hook may be calling)
        # Called before every emu_start, including the re-starts after a block was
        # classified: the CPU clears the exception QEMU still thinks is in flight there.
        self.before_start: Callable[[], None] | None = None
        self._flush_pending = False
        # Set by a platform with address spaces: whether a page translates now. Unicorn
        # translates the addresses ctl_remove_cache is given with the current page tables,
        # and raises a page fault from inside the caller's hook when one does not.
        self.mapped: Callable[[int], bool] | None = None
        self.forget_fault: Callable[[], None] | None = None
        self.misses = 0
        self.tails = 0
        self.native_classified = 0
        self._range_pairs = None                # set by classify_natively
        self._log = None
        if mode == "reference":
            self._global_hook = self._native_hook(UC_HOOK_CODE, "vmrr_code_hook", 1, 0)
            self._state.exact_all = 1
        else:
            self._use_cells(self._native_hook(UC_HOOK_BLOCK, "vmrr_block_hook", 1, 0))
            self._native_hook(UC_HOOK_EDGE_GENERATED, "vmrr_edge_hook", 1, 0)

    def _use_cells(self, handle) -> None:
        """Give every translated block a cell of its own as the block hook's user_data, so
        the hook finds its entry without hashing (icount_native.c, struct cell).

        Unicorn reads a block hook's user_data when it translates a block and passes that
        value whenever the block runs; the edge hook moves it to a fresh cell after each
        translation, through the user_data field of Unicorn's hook (its ``struct hook``,
        whose address the handle is). That layout is Unicorn's own: it is used only when
        the callback and user_data fields read back as what was just given, and the hook
        keeps hashing otherwise.
        """
        hook = handle.value
        fields = (ctypes.c_uint64 * 2).from_address(hook + _HOOK_CALLBACK_OFFSET)
        state = self._state_ptr.value
        if ctypes.c_int.from_address(hook).value != UC_HOOK_BLOCK \
                or list(fields) != [self._entry["vmrr_block_hook"], state]:
            return
        self._cells = (_Cell * CELLS)()
        first = self._cells[0]
        first.s = state
        self._state.cells = ctypes.addressof(self._cells)
        self._state.cells_mask = CELLS - 1
        self._state.next_cell = 0
        self._state.cell_slot = hook + _HOOK_CALLBACK_OFFSET + 8
        fields[1] = ctypes.addressof(first)
        fields[0] = self._entry["vmrr_block_hook_cell"]

    def _native_hook(self, kind: int, entry: str, begin: int, end: int):
        handle = _ucbind.uc_hook_h()
        status = _ucbind.uclib.uc_hook_add(
            self.uc._uch, ctypes.byref(handle), kind, ctypes.c_void_p(self._entry[entry]),
            self._state_ptr, ctypes.c_uint64(begin), ctypes.c_uint64(end))
        if status != 0:
            raise RuntimeError(f"uc_hook_add for the instruction counter ({entry}) failed: {status}")
        return handle

    def _hook_del(self, handle) -> None:
        _ucbind.uclib.uc_hook_del(self.uc._uch, handle)
        self._after_translation()

    def _after_translation(self) -> None:
        """Deleting a range hook or a range of blocks makes Unicorn translate the range's
        addresses with the current page tables; where they do not translate (another
        process's code) QEMU notes a page fault as in flight, and the program's next real
        one would become a double fault. ``forget_fault`` clears it."""
        if self.forget_fault is not None:
            self.forget_fault()

    # -- the counter as Python sees it ----------------------------------------------

    @property
    def icount(self) -> int:
        return self._state.icount

    @icount.setter
    def icount(self, value: int) -> None:
        self._state.icount = value
        self._state.block = None                   # no block is under way any more

    @property
    def limit(self) -> int:
        return self._state.limit

    @limit.setter
    def limit(self, value: int) -> None:
        self._state.limit = value

    @property
    def last_pc(self) -> int:
        """Address of the instruction most recently begun."""
        value = self._state.last_pc
        if value & LAZY_PC:
            # A block the edge hook classified began: its last instruction is found now.
            pc, s = value & ~LAZY_PC, self._state
            block = _Entry.from_address(s.block) if s.block else None
            if block is not None and block.pc == pc:
                shape = self._decoded(pc, block.size)
                value = pc + (shape.offsets[-1] if shape is not None else 0)
                s.last_pc = value
            else:
                value = pc
        return value

    def stop_soon(self) -> None:
        """Stop the VM before the next instruction begins (callable from any hook)."""
        self._state.limit = self._state.icount

    def stats(self) -> dict[str, int]:
        """Translations, classifications, tails, exact ranges."""
        s = self._state
        self._drain_log()
        return {"translations": s.translations, "misses": self.misses, "native": self.native_classified,
                "tails": self.tails, "exact_ranges": len(self._ranges)}

    # -- running --------------------------------------------------------------------

    def run(self, until: int, *, exact: bool = True) -> None:
        """``emu_start`` from RIP until the limit (or HLT, a fault, a stop request).

        Args:
            until: the address passed to ``emu_start`` as its end.
            exact: stop exactly at ``limit``. False lets the last block that crosses the
                limit finish (a live slice's end only bounds how late the loop looks at
                the host): no per-instruction tail. ``stop_soon`` is exact either way.

        Raises:
            UcError: as ``emu_start``; the icount is already corrected to the fault.
        """
        uc, s = self.uc, self._state
        s.soft = 0 if exact else 1
        try:
            while True:
                s.stop_reason = STOP_NONE
                if self.before_start is not None:
                    self.before_start()
                self._running = True
                try:
                    uc.emu_start(uc.reg_read(x86.UC_X86_REG_RIP), until)
                except UcError:
                    self.sync_fault(uc.reg_read(x86.UC_X86_REG_RIP))
                    raise
                finally:
                    self._running = False
                    if s.nlog:
                        self._drain_log()
                    if self._flush_pending:
                        self._flush_pending = False
                        uc.ctl_flush_tb()
                reason = s.stop_reason
                if reason == STOP_MISS:
                    self._classify(s.stop_pc, s.stop_size)
                elif reason == STOP_LIMIT and s.icount < s.limit and self._tail is None:
                    self._start_tail(s.stop_pc, s.stop_size)
                else:
                    return
        finally:
            if self._tail is not None:
                self._end_tail()

    def _start_tail(self, pc: int, size: int) -> None:
        """Count the block that crosses the limit one instruction at a time: code hooks
        over the parts of it that no exact range covers yet."""
        self.tails += 1
        handles = [self._native_hook(UC_HOOK_CODE, "vmrr_range_hook", lo, hi - 1)
                   for lo, hi in self._gaps(pc, pc + size)]
        self._tail = (pc, pc + size, handles, self._state.space)
        self._sync_ranges()
        self._remove_cache(pc, pc + size)
        self._slot(pc, size).kind = KIND_EXACT     # the hooks count it now

    def _end_tail(self) -> None:
        lo, hi, handles, space = self._tail
        self._tail = None
        self._sync_ranges()
        for handle in handles:
            self._hook_del(handle)
        # Unicorn drops the blocks that *start* in the range; blocks that start before it
        # and run into it were compiled with calls to the hook too. Blocks classified
        # while the tail counted part of them count those instructions themselves again.
        if space == self._state.space:
            self._remove_cache(lo, hi)
        else:                                # the tail's process left the CPU (exec, exit)
            self._flush_all()
        self._reset_overlapping(lo, hi)
        self._slot(lo, hi - lo, space).kind = KIND_NEW

    def sync_fault(self, rip: int) -> None:
        """A fault or exception stopped the current block at the instruction at ``rip``.

        In a counted block: count up to and including that instruction, as a
        per-instruction counter would have. In a block compiled with a code hook: repair
        RFLAGS, which Unicorn corrupts when an instruction with a code hook faults after
        one that left its flags lazily computed (``_repair_fault_flags``), so that a
        fault leaves the same state whichever way its block was counted.
        """
        s = self._state
        block = _Entry.from_address(s.block) if s.block else None
        if self._global_hook is not None or (block is not None and block.kind == KIND_EXACT):
            if s.last_pc == rip:                   # it faulted under its code hook
                self._repair_fault_flags()
            return
        if block is None or block.kind != KIND_COUNTED or not block.pc <= rip < block.pc + block.size:
            return
        shape = self._current.get((block.pc, block.size, self._state.space))
        if shape is None and block.last_off == LAST_UNKNOWN:
            shape = self._decoded(block.pc, block.size)     # classified by the edge hook
        if shape is None:
            return
        try:
            index = shape.offsets.index(rip - block.pc)
        except ValueError:
            return
        hooked = self._hooked(rip)
        s.icount = s.block_base + index + 1
        s.last_pc = rip
        s.block = None
        if hooked:                                 # a range hook of a partly counted block
            self._repair_fault_flags()

    def _repair_fault_flags(self) -> None:
        """Unicorn's code-hook prologue computes the flags into CC_SRC and marks them
        final, but a fault restores the *lazy* flag state recorded at the instruction's
        start, which then reinterprets CC_SRC: RFLAGS reads back wrong (an ``add`` then a
        faulting store gives CF|AF set). CC_SRC still holds the right arithmetic flags."""
        uc = self.uc
        cc_src = int.from_bytes(bytes(uc.context_save())[_cc_src_offset():][:8], "little")
        rflags = uc.reg_read(x86.UC_X86_REG_RFLAGS)
        uc.reg_write(x86.UC_X86_REG_RFLAGS, (rflags & ~_ARITH_FLAGS) | (cc_src & _ARITH_FLAGS))
        self._state.block = None

    # -- the block table ---------------------------------------------------------------

    def _slot(self, pc: int, size: int, space: int | None = None) -> _Entry:
        """The table entry for (pc, size) in address space ``space`` (default: the one
        running), inserted (as the edge hook would) if missing."""
        space = self._state.space if space is None else space
        first = ((((pc ^ space) * 0x9E3779B97F4A7C15) & NO_LIMIT) >> 32) & (TABLE_SLOTS - 1) & ~(WAYS - 1)
        table = self._table
        free = None
        for i in range(first, first + WAYS):
            e = table[i]
            if e.pc == pc and e.size == size and e.space == space & 0xFFFFFFFF:
                return e
            if free is None and e.size == 0:
                free = e
        e = free if free is not None else table[first + (self._state.translations & (WAYS - 1))]
        e.pc, e.size, e.icount, e.kind, e.last_off, e.counted = pc, size, 0, KIND_NEW, 0, 0
        e.space = space & 0xFFFFFFFF
        return e

    @property
    def space(self) -> int:
        return self._state.space

    @space.setter
    def space(self, value: int) -> None:
        """The address space that runs from now on (a Linux process's page-table root):
        its blocks are its own in the table."""
        self._state.space = value & 0xFFFFFFFF
        self._state.block = None

    def _read_code(self, pc: int, size: int) -> bytes:
        """The block's bytes through the CPU's own address translation (with paging on,
        block addresses are virtual)."""
        buf = ctypes.create_string_buffer(size)
        status = _ucbind.uclib.uc_vmem_read(self.uc._uch, ctypes.c_uint64(pc), ctypes.c_int(UC_PROT_EXEC),
                                            buf, ctypes.c_size_t(size))
        if status != 0:
            raise UcError(status)
        return buf.raw

    # -- native classification -----------------------------------------------------------

    def classify_natively(self, ram_address: int, ram_size: int, paging: bool) -> None:
        """Let the edge hook classify new blocks itself, reading their bytes from guest RAM
        (at ``ram_address`` in this process; through the page tables rooted at ``space``
        when ``paging``) as Unicorn translates them: a block with no instruction whose hook
        reads the icount before its last is counted at once, without stopping the VM for
        Python (``_classify``). Only for platforms whose IN and OUT hooks read no icount
        (the edge hook does not look for them): the Linux personality."""
        if self.mode != "fast":
            return
        self._range_pairs = (ctypes.c_uint64 * (2 * RANGES_MAX))()
        self._log = (ctypes.c_uint64 * (2 * LOG_MAX))()
        s = self._state
        s.ram, s.ram_size, s.paging = ram_address, ram_size, int(paging)
        s.ranges, s.log, s.nlog, s.log_max = ctypes.addressof(self._range_pairs), ctypes.addressof(self._log), 0, LOG_MAX
        self._sync_ranges()

    def _sync_ranges(self) -> None:
        """Tell the edge hook which ranges code hooks count (it leaves blocks there to Python)."""
        if self._range_pairs is None:
            return
        taken = self._taken()
        if len(taken) > RANGES_MAX:
            self._state.nranges = RANGES_OFF
            return
        for i, (lo, hi) in enumerate(taken):
            self._range_pairs[2 * i], self._range_pairs[2 * i + 1] = lo, hi
        self._state.nranges = len(taken)

    def _drain_log(self) -> None:
        """Index the blocks the edge hook classified by page (``_reset_overlapping`` must
        find them as it finds the ones Python classified)."""
        s = self._state
        n = s.nlog
        if not n:
            return
        log = self._log
        for i in range(n):
            packed = log[2 * i + 1]
            self._index((log[2 * i], packed & 0xFFFF, packed >> 16))
        s.nlog = 0
        self.native_classified += n

    def _index(self, key: tuple[int, int, int]) -> None:
        """File a classified block (address, size, space) under every page it covers."""
        pc, size, _space = key
        for page in range(pc >> 12, ((pc + size - 1) >> 12) + 1):
            self._by_page.setdefault(page, set()).add(key)

    def _shape(self, pc: int, code: bytes, icount: int | None) -> BlockShape:
        """The decoding of ``code`` at ``pc``, cached by address and bytes."""
        shape = self._shapes.get((pc, code))
        if shape is None:
            shape = self._shapes[(pc, code)] = decode_block(code, pc, icount)
        return shape

    def _decoded(self, pc: int, size: int) -> BlockShape | None:
        """The shape of a block the edge hook classified (for a fault inside it, or its
        last instruction's address), decoded from its current bytes; None if unreadable."""
        try:
            return self._shape(pc, self._read_code(pc, size), None)
        except UcError:
            return None

    def _classify(self, pc: int, size: int) -> None:
        self.misses += 1
        entry = self._slot(pc, size)
        icount = entry.icount or None       # 0: the edge hook did not see it translated
        try:
            code = self._read_code(pc, size)
        except UcError:
            code = b""
        shape = self._shape(pc, code, icount) if code else BlockShape((0,), True)
        if icount is not None and len(shape.offsets) != icount and not shape.exact:
            shape = BlockShape(shape.offsets, True)
        key = (pc, size, self._state.space)
        if key not in self._current:
            self._index(key)
        self._current[key] = shape
        lo, hi = pc, pc + size
        if shape.exact:
            for gap_lo, gap_hi in self._gaps(lo, hi):
                handle = self._native_hook(UC_HOOK_CODE, "vmrr_range_hook", gap_lo, gap_hi - 1)
                self._ranges[(gap_lo, gap_hi)] = handle
                self._sync_ranges()
                self._remove_cache(gap_lo, gap_hi)
                self._reset_overlapping(gap_lo, gap_hi)
        # A block that only overlaps exact ranges (or the tail) stays counted: it counts
        # the instructions no code hook counts. Giving it a range of its own would spread
        # per-instruction counting to every block overlapping that one, and so on.
        counted = len(shape.offsets) - self._hooked_count(pc, shape.offsets)
        entry = self._slot(pc, size)
        if shape.exact or counted == 0:
            entry.kind = KIND_EXACT
        else:
            if icount is None:
                entry.icount = len(shape.offsets)
            entry.counted = counted
            entry.last_off = shape.offsets[-1]
            entry.kind = KIND_COUNTED

    def _taken(self) -> list[tuple[int, int]]:
        """The address ranges code hooks count: the exact ranges and the tail."""
        taken = list(self._ranges)
        if self._tail is not None:
            taken.append(self._tail[:2])
        return taken

    def _hooked(self, address: int) -> bool:
        return any(a <= address < b for a, b in self._taken())

    def _hooked_count(self, pc: int, offsets: tuple[int, ...]) -> int:
        """How many of a block's instructions a code hook counts."""
        end = pc + offsets[-1] + 1
        near = [(a, b) for a, b in self._taken() if a < end and pc < b]
        if not near:
            return 0
        return sum(1 for off in offsets if any(a <= pc + off < b for a, b in near))

    def _gaps(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """The parts of [lo, hi) that no code hook covers yet.

        Unicorn calls *every* code hook whose range holds an instruction's address, so
        two range hooks over one instruction would count it twice: the exact ranges (and
        the tail) never overlap, and a block that straddles them gets hooks over the
        uncovered parts only.
        """
        taken = sorted(self._taken())
        gaps, at = [], lo
        for a, b in taken:
            if b <= at or a >= hi:
                continue
            if a > at:
                gaps.append((at, a))
            at = max(at, b)
        if at < hi:
            gaps.append((at, hi))
        return gaps

    def _remove_cache(self, lo: int, hi: int) -> None:
        """Drop the translated blocks holding code in [lo, hi), one page at a time: Unicorn
        translates the range's start to a physical address and assumes the rest follows,
        which paging does not promise across a page boundary."""
        while lo < hi:
            end = min(hi, (lo | (PAGE_SIZE - 1)) + 1)
            if self.mapped is not None and not self.mapped(lo):
                self._flush_all()            # another address space's code: drop every block
                return
            self.uc.ctl_remove_cache(lo, end)
            lo = end
        self._after_translation()

    def _flush_all(self) -> None:
        if self._running:
            # Stopped before the next block runs: a block looked up after this hook (the
            # next one after a SYSCALL) would otherwise be a stale translation of the old
            # code whose frame now holds other code (a process exec'd, or ended).
            self._flush_pending = True
            self.stop_soon()
            self.uc.emu_stop()
        else:
            self.uc.ctl_flush_tb()

    def _reset_overlapping(self, lo: int, hi: int) -> None:
        """A new exact range: blocks overlapping it were invalidated; forget their kind.
        Only the blocks on the range's pages are looked at (``_by_page``): a tail at every
        slice end must not walk every block the program ever ran."""
        self._drain_log()
        by_page = self._by_page
        seen = set()
        for page in range(lo >> 12, ((hi - 1) >> 12) + 1):
            for key in by_page.get(page, ()):
                if key in seen:
                    continue
                seen.add(key)
                pc, size, space = key
                if pc < hi and lo < pc + size:
                    self._slot(pc, size, space).kind = KIND_NEW

    # -- modes and invalidation ----------------------------------------------------------

    def set_exact(self, on: bool) -> None:
        """Count every instruction with a per-instruction hook (debugger hooks installed).
        The reference counter always does."""
        if self.mode == "reference" or on == (self._global_hook is not None):
            return
        if on:
            self._global_hook = self._native_hook(UC_HOOK_CODE, "vmrr_code_hook", 1, 0)
            self._state.exact_all = 1
        else:
            self._hook_del(self._global_hook)
            self._global_hook = None
            self._state.exact_all = 0
        self._state.block = None
        self.uc.ctl_flush_tb()

    @property
    def exact(self) -> bool:
        return self._global_hook is not None

    def invalidate(self) -> None:
        """Forget every block: call after changing what code lives at which address.

        Callable from inside a hook (a SYSCALL hook that changed mappings): the VM then
        stops before the next instruction and Unicorn's blocks are flushed before it goes
        on, so that no block translated from the old mapping runs again.
        """
        for handle in self._ranges.values():
            self._hook_del(handle)
        self._ranges.clear()
        self._sync_ranges()
        # Shapes stay: one is a function of the block's address and bytes alone, and the
        # same code comes back (a shell's children exec the same programs at the same places).
        if len(self._shapes) > MAX_SHAPES:
            self._shapes.clear()
        self._current.clear()
        self._by_page.clear()
        self._state.nlog = 0
        ctypes.memset(self._table, 0, ctypes.sizeof(self._table))
        self._state.block = None
        self._flush_all()
