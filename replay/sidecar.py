"""The sidecar index: what the first pass over a trace learned, kept next to it.

Opening a trace for time travel replays it once (to find the end of history, capture
the guest's output and lay snapshots). ``TRACE.idx`` keeps that: the last icount, the
outputs, and the snapshots (CPU contexts, device state, RAM keyframes and deltas), so
reopening skips the pass. The sidecar is never trusted: it names the exact trace it
belongs to (size and a hash of its header and tail) and the Unicorn version that made
its CPU contexts, carries a checksum, and anything that does not match — or does not
decode — is thrown away and rebuilt.

Layout: magic ``VMRRIDX1``, u32 crc32 of the rest, then an lz4 frame of one msgpack map.
"""

from __future__ import annotations

import hashlib
import os
import zlib

import lz4.frame
import msgpack
import unicorn

MAGIC = b"VMRRIDX1"
VERSION = 1
MAX_SIDECAR = 4 << 30


class SidecarInvalid(Exception):
    """The sidecar is missing, corrupt, stale, or from another Unicorn: rebuild it."""


def sidecar_path(trace: str) -> str:
    return trace + ".idx"


def trace_identity(trace: str) -> list:
    """[size, hash of the first and last 64 KiB]: changes whenever the trace does."""
    size = os.path.getsize(trace)
    with open(trace, "rb") as f:
        head = f.read(65536)
        f.seek(max(0, size - 65536))
        tail = f.read(65536)
    return [size, hashlib.blake2b(head + tail, digest_size=16).digest()]


def write(trace: str, content: dict) -> None:
    """Write ``content`` (msgpack-able) as TRACE.idx, atomically, mode 0600."""
    content = dict(content, version=VERSION, trace=trace_identity(trace), unicorn=unicorn.__version__)
    body = lz4.frame.compress(msgpack.packb(content, use_bin_type=True))
    path = sidecar_path(trace)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC + zlib.crc32(body).to_bytes(4, "little") + body)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read(trace: str) -> dict:
    """The sidecar's content for exactly this trace.

    Raises:
        SidecarInvalid: missing, corrupt, for another trace or another Unicorn.
    """
    path = sidecar_path(trace)
    try:
        if os.path.getsize(path) > MAX_SIDECAR:
            raise SidecarInvalid("too large")
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise SidecarInvalid(f"cannot read: {exc.strerror}") from None
    if data[:8] != MAGIC:
        raise SidecarInvalid("bad magic")
    body = data[12:]
    if zlib.crc32(body) != int.from_bytes(data[8:12], "little"):
        raise SidecarInvalid("checksum mismatch")
    try:
        content = msgpack.unpackb(lz4.frame.decompress(body), raw=False, strict_map_key=False)
    except Exception as exc:  # lz4 and msgpack raise their own classes for bad input
        raise SidecarInvalid(f"does not decode: {exc}") from None
    if not isinstance(content, dict) or content.get("version") != VERSION:
        raise SidecarInvalid("another sidecar version")
    if content.get("unicorn") != unicorn.__version__:
        raise SidecarInvalid("made by another Unicorn version")
    if content.get("trace") != trace_identity(trace):
        raise SidecarInvalid("stale: made for another trace")
    return content
