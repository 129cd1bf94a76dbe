"""The bytes on disk: magic numbers, frame layouts and caps (spec: docs/trace-format.md).

Everything that fixes a byte position or a limit lives here, so that the writer and
the reader cannot disagree. Integers are little-endian.
"""

from __future__ import annotations

import struct
import zlib

import lz4.block
import msgpack

# Bump on any change to the layout, the record encoding, or the order or meaning of
# EventKind. Readers accept exactly this version.
FORMAT_VERSION = 6          # 2: record icounts are deltas within a chunk
                            # 3: checkpoints carry the machine's state digest; payloads checked
                            # 4: Linux programs start with Linux's FPU state and selectors, and
                            #    digests/checkpoints carry the x87 registers (older Linux traces
                            #    ran with FCW = MXCSR = 0 and would diverge)
                            # 5: Linux: processes (the kernel's state holds processes, frames
                            #    shared copy-on-write), pids are the host's (header identity)
                            # 6: Linux: shared memory objects and System V IPC in the kernel's
                            #    state (MAP_SHARED pages are the objects'); clone3 runs

PAGE_SIZE = 4096
PAGE_SHIFT = 12

# --- file header -----------------------------------------------------------------
# The first 12 bytes (magic, format version) are the same in every version, so any
# vmrr can tell a trace from another file and name its version.
FILE_MAGIC = b"\x89VMRR\r\n\x1a"
# magic, format_version, header_len, image_len; then u32 header_crc over these 24
# bytes and the header map
HEADER_FIELDS = struct.Struct("<8sIIQ")
HEADER_CRC = struct.Struct("<I")
HEADER_PREFIX_LEN = HEADER_FIELDS.size + HEADER_CRC.size  # 28
VERSION_PREFIX_LEN = 12

# --- chunks ----------------------------------------------------------------------
CHUNK_MAGIC = b"VMCK"
# magic, chunk_index, comp_len, raw_len, n_records, first_icount, last_icount
CHUNK_HEAD = struct.Struct("<4sIIIIQQ")
CHUNK_CRC = struct.Struct("<I")
CHUNK_FRAME_LEN = CHUNK_HEAD.size + CHUNK_CRC.size  # 40

# --- trailer (the last 32 bytes of a complete trace) -----------------------------
TRAILER_MAGIC = b"VMRRIDX\n"
# footer_offset, footer_len, footer_crc, chunk_count; then u32 trailer_crc over
# these 20 bytes, then TRAILER_MAGIC
TRAILER_FIELDS = struct.Struct("<QIII")
TRAILER_LEN = TRAILER_FIELDS.size + 4 + len(TRAILER_MAGIC)  # 32

# --- caps: a reader rejects anything larger before allocating for it -------------
MAX_HEADER_LEN = 1 << 20           # the header map, without the image
MAX_IMAGE_LEN = 256 << 20          # the embedded guest image
MAX_RECORD_LEN = 8 << 20           # one packed record
MAX_CHUNK_RAW = 16 << 20           # uncompressed records of one chunk
MAX_CHUNK_COMP = MAX_CHUNK_RAW + MAX_CHUNK_RAW // 255 + 16  # LZ4 worst case of MAX_CHUNK_RAW
MAX_FOOTER_LEN = 64 << 20
MAX_CONTAINER_LEN = 1 << 20        # elements of one msgpack array or map
MIN_RECORD_LEN = 4                 # [0, kind, nil] packs to 4 bytes; none is shorter
MAX_MEM_SIZE = 1 << 40             # RAM the header may declare
MAX_ICOUNT = (1 << 64) - 1         # icounts are u64 in chunk frames
CHECKPOINT_PAGES_PER_RECORD = 256  # 1 MiB of pages per checkpoint record

# --- writer defaults ---------------------------------------------------------------
CHUNK_TARGET_RAW = 256 << 10       # flush a chunk once its records reach this size
FLUSH_INTERVAL = 1.0               # ... or once its oldest record is this old (seconds)


def pack_chunk(index: int, raw: bytes, n_records: int, first_icount: int, last_icount: int) -> bytes:
    """Frame ``raw`` (concatenated packed records) as chunk number ``index``."""
    comp = lz4.block.compress(raw, store_size=False)
    head = CHUNK_HEAD.pack(CHUNK_MAGIC, index, len(comp), len(raw), n_records,
                           first_icount, last_icount)
    return b"".join((head, CHUNK_CRC.pack(zlib.crc32(comp, zlib.crc32(head))), comp))


def pack_trailer(footer_offset: int, footer: bytes, chunk_count: int) -> bytes:
    """The fixed-size trailer that locates ``footer``, written at ``footer_offset``."""
    fields = TRAILER_FIELDS.pack(footer_offset, len(footer), zlib.crc32(footer), chunk_count)
    return fields + zlib.crc32(fields).to_bytes(4, "little") + TRAILER_MAGIC


def unpack_trailer(trailer: bytes) -> tuple[int, int, int, int]:
    """(footer_offset, footer_len, footer_crc, chunk_count) from the last TRAILER_LEN bytes.

    Raises:
        ValueError: the trailer's own checksum does not match.
    """
    fields = trailer[:TRAILER_FIELDS.size]
    stored = int.from_bytes(trailer[TRAILER_FIELDS.size:TRAILER_FIELDS.size + 4], "little")
    if zlib.crc32(fields) != stored:
        raise ValueError("trailer checksum mismatch")
    return TRAILER_FIELDS.unpack(fields)


def make_packer() -> msgpack.Packer:
    """The one msgpack encoding of the format: str as str, bytes as bin. A Linux
    program's names need not be UTF-8 (argv, paths): their other bytes travel as
    surrogate escapes, as Python's own file-system encoding carries them."""
    return msgpack.Packer(use_bin_type=True, autoreset=True, unicode_errors="surrogateescape")


def unpack_limits(max_len: int) -> dict:
    """msgpack decoding options that cap every string, bin, array and map at ``max_len``."""
    return dict(
        raw=False,
        unicode_errors="surrogateescape",
        use_list=True,
        strict_map_key=False,
        max_bin_len=max_len,
        max_str_len=max_len,
        max_array_len=min(max_len, MAX_CONTAINER_LEN),
        max_map_len=min(max_len, MAX_CONTAINER_LEN),
        max_ext_len=0,
    )


def unpack_exactly(data: bytes, max_len: int) -> object:
    """Decode ``data`` as exactly one msgpack value.

    Raises:
        ValueError: the bytes are not one well-formed value within the caps.
    """
    try:
        return msgpack.unpackb(data, **unpack_limits(max_len))
    except msgpack.ExtraData as error:
        raise ValueError(f"{len(error.extra)} stray bytes after the msgpack value") from None
    except Exception as error:  # untrusted bytes: every decoding failure means "malformed"
        raise ValueError(f"malformed msgpack ({type(error).__name__}: {error})") from None


def unpack_records(raw: bytes, n_records: int) -> list:
    """Decode ``raw`` as exactly ``n_records`` msgpack values laid end to end.

    The values are decoded as one array by prefixing an array32 header, which makes
    msgpack itself tell a short or cut-off record from a complete one.

    Raises:
        ValueError: fewer or more values, or malformed ones.
    """
    framed = b"\xdd" + n_records.to_bytes(4, "big") + raw
    limits = unpack_limits(len(raw))
    limits["max_array_len"] = max(limits["max_array_len"], n_records)
    try:
        return msgpack.unpackb(framed, **limits)
    except msgpack.ExtraData:
        raise ValueError(f"more records than the {n_records} the chunk header announces") from None
    except ValueError as error:
        if "incomplete" in str(error).lower():
            raise ValueError(f"records are truncated: the data ends before the "
                             f"{n_records} records the chunk header announces") from None
        raise ValueError(f"malformed msgpack ({type(error).__name__}: {error})") from None
    except Exception as error:  # untrusted bytes: every decoding failure means "malformed"
        raise ValueError(f"malformed msgpack ({type(error).__name__}: {error})") from None
