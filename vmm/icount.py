"""The exact instruction counter: a native UC_HOOK_CODE callback, no Python on the hot path.

Unicorn has no instruction counter of its own, and a Python hook per instruction runs at
~1.5 MIPS. Instead a dozen bytes of x86-64 machine code, placed in an executable page,
are registered as the code hook. Before each instruction begins it does::

    if (s->icount >= s->limit) { uc_emu_stop(uc); return; }   /* instruction not run */
    s->icount++; s->last_pc = address;

so ``icount`` counts the instructions that have begun, the VM stops exactly at ``limit``
with RIP on the first instruction not run, and ``last_pc`` is the address of the
instruction being executed (the faulting one, inside a fault). Python reads and writes
the shared struct through ctypes at any moment: inside a device callback, after HLT,
after a fault. ``stop_soon()`` lowers the limit so that the VM stops before the next
instruction; this is how a device asks the run loop to look at it (rather than
``uc.emu_stop()``, which would let one more instruction's hook count itself first).
"""

from __future__ import annotations

import ctypes
import mmap

from unicorn import UC_HOOK_CODE, Uc
from unicorn.unicorn_py3 import unicorn as _ucbind

NO_LIMIT = (1 << 64) - 1

# System V AMD64: rdi = uc, rsi = address, edx = size, rcx = user_data (our struct).
_HOOK_CODE = bytes([
    0x48, 0x8B, 0x01,              # mov rax, [rcx]          ; icount
    0x48, 0x3B, 0x41, 0x08,        # cmp rax, [rcx+8]        ; limit
    0x73, 0x0B,                    # jae .stop
    0x48, 0xFF, 0xC0,              # inc rax
    0x48, 0x89, 0x01,              # mov [rcx], rax
    0x48, 0x89, 0x71, 0x18,        # mov [rcx+24], rsi       ; last_pc
    0xC3,                          # ret
    0xFF, 0x61, 0x10,              # .stop: jmp [rcx+16]     ; tail-call uc_emu_stop(uc)
])


class _CounterState(ctypes.Structure):
    _fields_ = [
        ("icount", ctypes.c_uint64),
        ("limit", ctypes.c_uint64),
        ("emu_stop", ctypes.c_void_p),
        ("last_pc", ctypes.c_uint64),
    ]


class InstructionCounter:
    """Counts every instruction a Unicorn engine begins, and stops it at a chosen icount.

    Args:
        uc: the engine to attach to. The counter lives as long as this object.
    """

    def __init__(self, uc: Uc) -> None:
        self._page = mmap.mmap(-1, mmap.PAGESIZE,
                               prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        self._page.write(_HOOK_CODE)
        code_addr = ctypes.addressof(ctypes.c_char.from_buffer(self._page))
        stop_addr = ctypes.cast(_ucbind.uclib.uc_emu_stop, ctypes.c_void_p).value
        self._state = _CounterState(0, NO_LIMIT, stop_addr, 0)
        handle = _ucbind.uc_hook_h()
        status = _ucbind.uclib.uc_hook_add(
            uc._uch, ctypes.byref(handle), UC_HOOK_CODE, ctypes.c_void_p(code_addr),
            ctypes.cast(ctypes.pointer(self._state), ctypes.c_void_p),
            ctypes.c_uint64(1), ctypes.c_uint64(0))
        if status != 0:
            raise RuntimeError(f"uc_hook_add for the instruction counter failed: {status}")
        self._handle = handle

    @property
    def icount(self) -> int:
        return self._state.icount

    @icount.setter
    def icount(self, value: int) -> None:
        self._state.icount = value

    @property
    def limit(self) -> int:
        return self._state.limit

    @limit.setter
    def limit(self, value: int) -> None:
        self._state.limit = value

    @property
    def last_pc(self) -> int:
        """Address of the instruction most recently begun."""
        return self._state.last_pc

    def stop_soon(self) -> None:
        """Stop the VM before the next instruction begins (callable from any hook)."""
        self._state.limit = self._state.icount
