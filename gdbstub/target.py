"""What gdb sees of the guest CPU: the register layout and the target description.

gdb numbers registers in the order the target description (``target.xml``) lists them,
and the ``g`` packet carries them all in that order, little-endian. For i386:x86-64 gdb 13
requires the ``org.gnu.gdb.i386.core`` feature with the x87 registers in it; SSE and the
rest are optional. The VMM does not expose x87 state, so those registers are sent as
*unavailable* (``xx`` bytes), which gdb shows as ``<unavailable>`` rather than inventing
zeros. ``fs_base``/``gs_base`` come in the ``org.gnu.gdb.i386.segments`` feature, and the
control registers in a vmrr feature gdb lists with ``info registers cr0`` etc.

A Linux program's description also names the OS ABI (``<osabi>GNU/Linux</osabi>``), so
that gdb uses its svr4 shared-library support and Linux signal and frame knowledge, and
adds the ``org.gnu.gdb.i386.linux`` feature with ``orig_rax``: without that register gdb
13 skips the rest of its amd64 GNU/Linux set-up. It also has the SSE registers (xmm0-15,
mxcsr), from the thread's saved vector state.

A Linux program's registers are numbered, and its ``g`` packet laid out, exactly as gdb's
built-in amd64 GNU/Linux description has them (core, sse, linux, segments: registers 0-59,
560 bytes), and the control registers come after that, read by ``p`` only. gdb fetches a
target description for the first inferior alone: an inferior it adds later for a process
it meets in a thread list or a stop reply (a fork's child) gets the built-in description
from the executable's ELF header, and reads that process's ``g`` packets with it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RegisterDef:
    """One register as gdb sees it.

    Attributes:
        name: gdb's name.
        bitsize: width on the wire.
        gdb_type: the type named in the target description.
        source: key in ``TimeTravel.registers()``, or None if the VMM does not have it.
        group: register group for the description, if not the default.
    """

    name: str
    bitsize: int
    gdb_type: str
    source: str | None
    group: str | None = None

    @property
    def size(self) -> int:
        return self.bitsize // 8


def _gprs() -> list[RegisterDef]:
    names = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
             "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
    types = {"rbp": "data_ptr", "rsp": "data_ptr"}
    regs = [RegisterDef(n, 64, types.get(n, "int64"), n) for n in names]
    regs.append(RegisterDef("rip", 64, "code_ptr", "rip"))
    regs.append(RegisterDef("eflags", 32, "i386_eflags", "rflags"))
    regs += [RegisterDef(s, 32, "int32", s) for s in ("cs", "ss", "ds", "es", "fs", "gs")]
    return regs


def _x87() -> list[RegisterDef]:
    regs = [RegisterDef(f"st{i}", 80, "i387_ext", None) for i in range(8)]
    regs += [RegisterDef(n, 32, "int", None, "float")
             for n in ("fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop")]
    return regs


CORE = tuple(_gprs() + _x87())
SSE = tuple([RegisterDef(f"xmm{i}", 128, "vec128", f"xmm{i}") for i in range(16)]
            + [RegisterDef("mxcsr", 32, "i386_mxcsr", "mxcsr", "vector")])
SEGMENTS = (RegisterDef("fs_base", 64, "int", "fs_base"), RegisterDef("gs_base", 64, "int", "gs_base"))
SYSTEM = tuple(RegisterDef(n, 64, "int", n, "system") for n in ("cr0", "cr2", "cr3", "cr4"))
LINUX = (RegisterDef("orig_rax", 64, "int", "orig_rax", "system"),)
REGISTERS: tuple[RegisterDef, ...] = CORE + SEGMENTS + SYSTEM
# gdb's own amd64 GNU/Linux layout first (what an inferior without our description expects).
LINUX_REGISTERS: tuple[RegisterDef, ...] = CORE + SSE + LINUX + SEGMENTS + SYSTEM
LINUX_G_PACKET = len(CORE + SSE + LINUX + SEGMENTS)      # registers the g packet carries
REGISTER_NUMBERS = {reg.name: i for i, reg in enumerate(LINUX_REGISTERS)}
RIP, RSP, RBP = REGISTER_NUMBERS["rip"], REGISTER_NUMBERS["rsp"], REGISTER_NUMBERS["rbp"]

_MXCSR_FIELDS = (("IE", 0), ("DE", 1), ("ZE", 2), ("OE", 3), ("UE", 4), ("PE", 5), ("DAZ", 6),
                 ("IM", 7), ("DM", 8), ("ZM", 9), ("OM", 10), ("UM", 11), ("PM", 12), ("FZ", 15))
_VEC128 = ['  <vector id="v4f" type="ieee_single" count="4"/>',
           '  <vector id="v2d" type="ieee_double" count="2"/>',
           '  <vector id="v16i8" type="int8" count="16"/>',
           '  <vector id="v8i16" type="int16" count="8"/>',
           '  <vector id="v4i32" type="int32" count="4"/>',
           '  <vector id="v2i64" type="int64" count="2"/>',
           '  <union id="vec128">',
           *(f'    <field name="{n}" type="{t}"/>' for n, t in (
               ("v4_float", "v4f"), ("v2_double", "v2d"), ("v16_int8", "v16i8"), ("v8_int16", "v8i16"),
               ("v4_int32", "v4i32"), ("v2_int64", "v2i64"), ("uint128", "uint128"))),
           '  </union>',
           '  <flags id="i386_mxcsr" size="4">',
           *(f'    <field name="{n}" start="{b}" end="{b}"/>' for n, b in _MXCSR_FIELDS),
           '  </flags>']
_EFLAGS_FIELDS = (("CF", 0), ("", 1), ("PF", 2), ("AF", 4), ("ZF", 6), ("SF", 7), ("TF", 8),
                  ("IF", 9), ("DF", 10), ("OF", 11), ("NT", 14), ("RF", 16), ("VM", 17),
                  ("AC", 18), ("VIF", 19), ("VIP", 20), ("ID", 21))


def _reg_xml(reg: RegisterDef) -> str:
    group = f' group="{reg.group}"' if reg.group else ""
    return f'  <reg name="{reg.name}" bitsize="{reg.bitsize}" type="{reg.gdb_type}"{group}/>'


def _feature_xml(name: str, regs: tuple[RegisterDef, ...], prologue: list[str] | None = None) -> list[str]:
    return [f'<feature name="{name}">', *(prologue or []), *(_reg_xml(r) for r in regs), "</feature>"]


def registers_for(linux: bool) -> tuple[RegisterDef, ...]:
    """The registers gdb numbers, in order, for an appliance or a Linux program."""
    return LINUX_REGISTERS if linux else REGISTERS


def g_packet_registers(linux: bool) -> tuple[RegisterDef, ...]:
    """The registers a ``g`` reply carries: an appliance's all, a Linux program's up to
    gs_base (gdb's own amd64 GNU/Linux layout; the rest are read with ``p``)."""
    return LINUX_REGISTERS[:LINUX_G_PACKET] if linux else REGISTERS


def target_xml(linux: bool = False) -> bytes:
    """The target description gdb reads with ``qXfer:features:read:target.xml``.

    Args:
        linux: describe a Linux program (OS ABI GNU/Linux, SSE, ``orig_rax``; numbered
            as gdb's built-in amd64 GNU/Linux description).
    """
    flags = ['  <flags id="i386_eflags" size="4">',
             *(f'    <field name="{n}" start="{b}" end="{b}"/>' for n, b in _EFLAGS_FIELDS),
             "  </flags>"]
    head = ['<?xml version="1.0"?>', '<!DOCTYPE target SYSTEM "gdb-target.dtd">', "<target>",
            "<architecture>i386:x86-64</architecture>"]
    if linux:
        features = [*_feature_xml("org.gnu.gdb.i386.core", CORE, flags),
                    *_feature_xml("org.gnu.gdb.i386.sse", SSE, _VEC128),
                    *_feature_xml("org.gnu.gdb.i386.linux", LINUX),
                    *_feature_xml("org.gnu.gdb.i386.segments", SEGMENTS),
                    *_feature_xml("org.vmrr.x86.system", SYSTEM)]
        head.append("<osabi>GNU/Linux</osabi>")
    else:
        features = [*_feature_xml("org.gnu.gdb.i386.core", CORE, flags),
                    *_feature_xml("org.gnu.gdb.i386.segments", SEGMENTS),
                    *_feature_xml("org.vmrr.x86.system", SYSTEM)]
    lines = [*head, *features, "</target>"]
    return ("\n".join(lines) + "\n").encode()


def encode_register(reg: RegisterDef, values: dict[str, int]) -> str:
    """One register's bytes as hex, little-endian; ``xx`` bytes when it is unavailable."""
    if reg.source is None or reg.source not in values:
        return "xx" * reg.size
    value = values[reg.source] & ((1 << reg.bitsize) - 1)
    return value.to_bytes(reg.size, "little").hex()


def encode_registers(values: dict[str, int], regs: tuple[RegisterDef, ...] = REGISTERS) -> str:
    """The ``g`` reply: every register of ``regs`` in order."""
    return "".join(encode_register(reg, values) for reg in regs)
