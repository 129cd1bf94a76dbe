#!/usr/bin/env python3
"""Dump a vmrr trace: header, chunks, events, checkpoints, footer.

An independent decoder written from docs/trace-format.md. It deliberately does not
import trace_format, so the tests that compare it with TraceReader check the spec,
not one implementation against itself. Needs only lz4, msgpack and the stdlib.

Usage: dump_trace.py TRACE [--no-events] [--json] [--limit N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import struct
import sys
import zlib

import lz4.block
import msgpack

# --- from the spec -------------------------------------------------------------------
MAGIC = b"\x89VMRR\r\n\x1a"
SUPPORTED_VERSION = 6
HEADER_LEN = 28
CHUNK_MAGIC = b"VMCK"
CHUNK_FRAME = 40
TRAILER_LEN = 32
TRAILER_MAGIC = b"VMRRIDX\n"
MAX_HEADER_MAP = 1 << 20
MAX_IMAGE = 256 << 20
MAX_RAW = 16 << 20
MAX_COMP = MAX_RAW + 65809
MAX_FOOTER = 64 << 20
KIND_NAMES = {
    1: "CLOCK", 2: "RDTSC", 3: "ENTROPY", 4: "TIMER", 5: "SOCK_ACCEPT", 6: "SOCK_DATA",
    7: "SOCK_HUP", 8: "CONSOLE_IN", 9: "INTERRUPT", 10: "DIGEST", 11: "OUTPUT",
    12: "CHECKPOINT", 13: "EXCEPTION", 14: "END", 15: "SYSCALL", 16: "BLOB", 17: "SIGNAL",
}
CHECKPOINT = 12
END = 14


class DumpError(Exception):
    """The trace cannot be decoded at some offset."""


def u32(data: bytes, at: int) -> int:
    return struct.unpack_from("<I", data, at)[0]


def u64(data: bytes, at: int) -> int:
    return struct.unpack_from("<Q", data, at)[0]


def unpack_one(data: bytes) -> object:
    """The single msgpack value that data holds."""
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as error:
        raise DumpError(f"bad msgpack ({error})") from None


def unpack_records(raw: bytes, n_records: int) -> list:
    """n_records msgpack values laid end to end, decoded as one array (array32 header)."""
    return msgpack.unpackb(b"\xdd" + struct.pack(">I", n_records) + raw, raw=False,
                           strict_map_key=False)


def decode(path: str) -> dict:
    """Decode the whole trace at ``path`` into plain Python values.

    Returns a dict with: version, header (the header map), image_len, image_sha256_ok,
    chunks (list of dicts), events (list of (icount, kind, payload), checkpoints
    included), footer (dict or None), end, stop (None, or (offset, reason) where a
    footer-less scan stopped).

    Raises:
        DumpError: the header is unreadable, or a present footer is damaged.
    """
    with open(path, "rb") as file:
        data = file.read()
    if data[:8] != MAGIC:
        raise DumpError("offset 0: bad magic, not a vmrr trace")
    if len(data) < HEADER_LEN:
        raise DumpError("offset 0: file header truncated")
    version = u32(data, 8)
    if version != SUPPORTED_VERSION:
        raise DumpError(f"offset 8: format version {version}, this dumper reads {SUPPORTED_VERSION}")
    header_len, image_len, header_crc = u32(data, 12), u64(data, 16), u32(data, 24)
    if header_len > MAX_HEADER_MAP or image_len > MAX_IMAGE:
        raise DumpError("offset 12: header or image length beyond the caps")
    header_bytes = data[HEADER_LEN:HEADER_LEN + header_len]
    if len(header_bytes) != header_len or zlib.crc32(data[:24] + header_bytes) != header_crc:
        raise DumpError("offset 0: header truncated or checksum mismatch")
    header = unpack_one(header_bytes)
    image = data[HEADER_LEN + header_len:HEADER_LEN + header_len + image_len]
    if len(image) != image_len:
        raise DumpError(f"offset {HEADER_LEN + header_len}: image truncated")
    body = HEADER_LEN + header_len + image_len
    result = {
        "version": version, "header": header, "image_len": image_len,
        "image_sha256_ok": hashlib.sha256(image).hexdigest() == header["config"]["image_sha256"],
        "chunks": [], "events": [], "footer": None, "end": None, "stop": None,
    }

    body_end = len(data)
    if len(data) >= body + TRAILER_LEN and data[-8:] == TRAILER_MAGIC:
        trailer = data[-TRAILER_LEN:]
        footer_offset, footer_len, footer_crc, chunk_count = struct.unpack_from("<QIII", trailer)
        if zlib.crc32(trailer[:20]) != u32(trailer, 20):
            raise DumpError(f"offset {len(data) - TRAILER_LEN}: trailer checksum mismatch")
        footer = data[footer_offset:footer_offset + footer_len]
        if footer_len > MAX_FOOTER or footer_offset + footer_len + TRAILER_LEN != len(data) \
                or zlib.crc32(footer) != footer_crc:
            raise DumpError(f"offset {footer_offset}: footer misplaced or checksum mismatch")
        result["footer"] = unpack_one(footer)
        result["footer"]["chunk_count"] = chunk_count
        result["end"] = result["footer"]["end"]
        body_end = footer_offset

    offset = body
    while offset < body_end:
        index = len(result["chunks"])
        try:
            chunk, records = decode_chunk(data, offset, index)
        except DumpError as error:
            if result["footer"] is not None:
                raise
            result["stop"] = (offset, str(error))
            break
        result["chunks"].append(chunk)
        result["events"].extend(records)
        offset += chunk["length"]
    if result["footer"] is None:
        if result["stop"] is None:
            result["stop"] = (offset, "end of file without a footer")
        ends = [payload for _, kind, payload in result["events"] if kind == END]
        result["end"] = ends[-1] if ends else None
    return result


def decode_chunk(data: bytes, offset: int, index: int) -> tuple[dict, list]:
    frame = data[offset:offset + CHUNK_FRAME]
    if len(frame) < CHUNK_FRAME:
        raise DumpError(f"chunk {index} at offset {offset}: truncated frame")
    magic, number, comp_len, raw_len, n_records, first, last = struct.unpack_from("<4sIIIIQQ", frame)
    if magic != CHUNK_MAGIC or number != index:
        raise DumpError(f"chunk {index} at offset {offset}: bad magic or chunk number")
    if not (0 < comp_len <= MAX_COMP and 0 < raw_len <= MAX_RAW and 0 < n_records <= raw_len // 4):
        raise DumpError(f"chunk {index} at offset {offset}: sizes beyond the caps")
    comp = data[offset + CHUNK_FRAME:offset + CHUNK_FRAME + comp_len]
    if len(comp) != comp_len:
        raise DumpError(f"chunk {index} at offset {offset}: truncated data")
    if zlib.crc32(frame[:36] + comp) != u32(frame, 36):
        raise DumpError(f"chunk {index} at offset {offset}: checksum mismatch")
    try:
        raw = lz4.block.decompress(comp, uncompressed_size=raw_len)
        values = unpack_records(raw, n_records)
    except Exception as error:
        raise DumpError(f"chunk {index} at offset {offset}: cannot decode ({error})") from None
    if len(raw) != raw_len:
        raise DumpError(f"chunk {index} at offset {offset}: sizes do not match the frame")
    records = []
    icount = first
    for value in values:
        if not (isinstance(value, list) and len(value) == 3 and type(value[0]) is int
                and value[0] >= 0 and value[1] in KIND_NAMES):
            raise DumpError(f"chunk {index} at offset {offset}: bad record {value!r:.80}")
        icount += value[0]                       # records hold icount deltas
        records.append((icount, value[1], value[2]))
    if records[0][0] != first or records[-1][0] != last:
        raise DumpError(f"chunk {index} at offset {offset}: icounts do not match the frame")
    counts: dict[int, int] = {}
    for _, kind, _ in records:
        counts[kind] = counts.get(kind, 0) + 1
    chunk = {"index": index, "offset": offset, "length": CHUNK_FRAME + comp_len,
             "raw_len": raw_len, "n_records": n_records, "first_icount": first,
             "last_icount": last, "counts": counts}
    return chunk, records


def show(value: object, limit: int = 48) -> str:
    """A short text form of a payload; bytes as hex, long ones cut."""
    if isinstance(value, bytes):
        text = value[:limit].hex()
        return f"<{len(value)} bytes {text}{'…' if len(value) > limit else ''}>"
    if isinstance(value, list):
        return "[" + ", ".join(show(item, limit) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{show(k, limit)}: {show(v, limit)}" for k, v in value.items()) + "}"
    return repr(value)


def jsonable(value: object) -> object:
    if isinstance(value, bytes):
        return {"hex": value.hex()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return value


def checkpoint_summary(payload: dict) -> str:
    return (f"checkpoint {payload['n']} part {payload['part'] + 1}/{payload['parts']} "
            f"{'base' if payload['full'] else 'delta'}, {len(payload['pages'])} pages"
            + (f", cpu {show(payload['cpu'])}" if payload["part"] == 0 else "")
            + (f", digest {show(payload.get('digest'))}" if payload["part"] == 0 else ""))


def print_text(result: dict, events: bool, limit: int | None) -> None:
    header = result["header"]
    config = header["config"]
    print(f"format version {result['version']}, recorded by vmrr {header['tool_version']} "
          f"at unix time {header['created_unix']:.3f}")
    print(f"machine: {config['mem_size']} bytes RAM, cpu {config['cpu_model']}, "
          f"boot args {config['boot_args']!r}")
    print(f"devices: {show(config['devices'])}")
    print(f"image: {config['image_name']} ({result['image_len']} bytes, sha256 "
          f"{config['image_sha256']}{'' if result['image_sha256_ok'] else ' MISMATCH'})")
    print(f"flags: {show(header['flags'])}")
    for chunk in result["chunks"]:
        counts = ", ".join(f"{KIND_NAMES[k]}={n}" for k, n in sorted(chunk["counts"].items()))
        print(f"chunk {chunk['index']} at {chunk['offset']}: {chunk['length']} bytes "
              f"({chunk['raw_len']} raw), icount {chunk['first_icount']}..{chunk['last_icount']}, "
              f"{counts}")
    if events:
        for shown, (icount, kind, payload) in enumerate(result["events"]):
            if limit is not None and shown >= limit:
                print(f"... {len(result['events']) - limit} more events")
                break
            text = checkpoint_summary(payload) if kind == CHECKPOINT else show(payload)
            print(f"{icount:>14} {KIND_NAMES[kind]:<12} {text}")
    footer = result["footer"]
    if footer is None:
        offset, reason = result["stop"]
        print(f"INCOMPLETE: no footer; scan stopped at offset {offset}: {reason}")
    else:
        print(f"footer: {len(footer['chunks'])} chunks, {len(footer['checkpoints'])} checkpoints, "
              f"events " + ", ".join(f"{KIND_NAMES[k]}={n}" for k, n in footer["event_counts"]))
    print(f"end: {show(result['end'])}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace")
    parser.add_argument("--no-events", action="store_true", help="print header and chunks only")
    parser.add_argument("--json", action="store_true", help="one JSON document; bytes as {\"hex\": ...}")
    parser.add_argument("--limit", type=int, default=None, help="print at most N events")
    args = parser.parse_args(argv)
    try:
        result = decode(args.trace)
    except (OSError, DumpError, KeyError, TypeError, ValueError) as error:
        print(f"{args.trace}: {error}", file=sys.stderr)
        return 2
    if args.json:
        if args.no_events:
            result["events"] = []
        json.dump(jsonable(result), sys.stdout)
        print()
    else:
        print_text(result, not args.no_events, args.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
