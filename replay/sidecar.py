"""The sidecar index: what the first pass over a trace learned, kept next to it.

Opening a trace for time travel replays it once (to find the end of history, capture
the guest's output and lay snapshots). ``TRACE.idx`` keeps that: the last icount, the
outputs, and the snapshots (CPU contexts, device state, RAM keyframes and deltas), so
reopening skips the pass.

The sidecar is a cache, and a cache is never trusted:

- it is *authenticated*: a keyed BLAKE2b MAC with a secret that never leaves this
  user's cache directory (``sidecar_key``), so a sidecar altered by anyone else — or
  copied from another machine — is refused, checksum or not;
- it is *bound* to the exact trace (a BLAKE2b hash of the whole trace file) and to the
  Unicorn version that made its CPU contexts;
- its size is capped before it is read, its decompression is capped, and every field
  is checked by the time-travel engine before anything is used (``timetravel``), which
  builds fresh objects and commits them only when all checks passed.

Anything that does not match is thrown away and rebuilt by a replay.

Layout: magic ``VMRRIDX2``, 32-byte MAC of the rest, then an lz4 frame of one msgpack map.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat

import lz4.frame
import msgpack
import unicorn

from trace_format import safefile

MAGIC = b"VMRRIDX2"
VERSION = 3                    # 3: console rows carry their stream (stdout, stderr, console)
MAC_LEN = 32
KEY_LEN = 32
HEAD_LEN = len(MAGIC) + MAC_LEN


class SidecarInvalid(Exception):
    """The sidecar is missing, corrupt, stale, forged, or from another Unicorn: rebuild it."""


def sidecar_path(trace: str) -> str:
    return trace + ".idx"


def cache_dir() -> str:
    """Where this user's vmrr secrets live: $VMRR_CACHE_DIR, else $XDG_CACHE_HOME/vmrr, else ~/.cache/vmrr."""
    explicit = os.environ.get("VMRR_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "vmrr")


def sidecar_key() -> bytes | None:
    """This user's secret for sidecar MACs, created on first use (mode 0600); None if unusable."""
    directory = cache_dir()
    path = os.path.join(directory, "sidecar.key")
    for _attempt in range(2):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            try:
                os.makedirs(directory, mode=0o700, exist_ok=True)
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            except FileExistsError:
                continue                       # another vmrr made it meanwhile: read that one
            except OSError:
                return None
            try:
                key = os.urandom(KEY_LEN)
                os.write(fd, key)
                os.fsync(fd)
            except OSError:
                return None
            finally:
                os.close(fd)
            return key
        except OSError:
            return None
        try:
            info = os.fstat(fd)
            if (not stat.S_ISREG(info.st_mode) or info.st_size != KEY_LEN
                    or info.st_uid != os.getuid() or info.st_mode & 0o077):
                return None
            key = os.read(fd, KEY_LEN)
        except OSError:
            return None
        finally:
            os.close(fd)
        return key if len(key) == KEY_LEN else None
    return None


def trace_identity(trace: str) -> list:
    """[size, BLAKE2b of the whole file]: changes whenever any byte of the trace does."""
    digest = hashlib.blake2b(digest_size=32)
    fd = os.open(trace, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SidecarInvalid("the trace is not a regular file")
        size = 0
        while True:
            block = os.read(fd, 1 << 20)
            if not block:
                break
            size += len(block)
            digest.update(block)
    finally:
        os.close(fd)
    return [size, digest.digest()]


def _mac(key: bytes, body: bytes) -> bytes:
    return hashlib.blake2b(body, key=key, digest_size=MAC_LEN).digest()


def write(trace: str, content: dict) -> None:
    """Write ``content`` (msgpack-able) as TRACE.idx, atomically, mode 0600.

    Raises:
        SymlinkRefused: a symbolic link stands at TRACE.idx.
        OSError: it cannot be written (or there is no key to sign it with).
    """
    key = sidecar_key()
    if key is None:
        raise OSError("no sidecar key in the cache directory")
    content = dict(content, version=VERSION, trace=trace_identity(trace), unicorn=unicorn.__version__)
    body = b"".join(_compressed(packed(content)))
    # A fresh file beside the trace, renamed into place: never written through a link
    # someone planted at TRACE.idx (or at any temporary name).
    safefile.replace_atomically(sidecar_path(trace), MAGIC + _mac(key, body) + body)


def packed(content: dict):
    """msgpack of ``content``, the same bytes ``packb`` makes, a list element at a time: each
    call holds the GIL for one snapshot, not for all of them (the sidecar is written
    while a debugger uses the engine, ``TimeTravel``)."""
    packer = msgpack.Packer(use_bin_type=True, unicode_errors="surrogateescape")
    yield packer.pack_map_header(len(content))
    for name, value in content.items():
        yield packer.pack(name)
        if type(value) is list:
            yield packer.pack_array_header(len(value))
            for item in value:
                yield packer.pack(item)
        else:
            yield packer.pack(value)


def _compressed(chunks):
    """One lz4 frame of the chunks (lz4 lets other threads run while it compresses)."""
    compressor = lz4.frame.LZ4FrameCompressor()
    yield compressor.begin()
    for chunk in chunks:
        out = compressor.compress(chunk)
        if out:
            yield out
    yield compressor.flush()


def read(trace: str, *, max_bytes: int) -> dict:
    """The sidecar's content for exactly this trace, decoded but not yet checked field by field.

    Args:
        max_bytes: refuse a sidecar (on disk, and decompressed) larger than this.

    Raises:
        SidecarInvalid: missing, not a regular file, too large, forged or damaged, for
            another trace or another Unicorn.
    """
    key = sidecar_key()
    if key is None:
        raise SidecarInvalid("no sidecar key")
    path = sidecar_path(trace)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise SidecarInvalid(f"cannot open: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SidecarInvalid("not a regular file")
        if info.st_size > max_bytes:
            raise SidecarInvalid(f"{info.st_size} bytes is more than the {max_bytes} allowed")
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise SidecarInvalid(f"cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if data[:len(MAGIC)] != MAGIC or len(data) < HEAD_LEN:
        raise SidecarInvalid("bad magic (another sidecar version?)")
    body = data[HEAD_LEN:]
    if not hmac.compare_digest(_mac(key, body), data[len(MAGIC):HEAD_LEN]):
        raise SidecarInvalid("its MAC does not match: damaged, altered, or made elsewhere")
    try:
        decompressor = lz4.frame.LZ4FrameDecompressor()
        raw = decompressor.decompress(body, max_length=max_bytes)
        if not decompressor.eof or decompressor.unused_data:
            raise SidecarInvalid("its data is cut short, too large, or followed by stray bytes")
        content = msgpack.unpackb(raw, raw=False, strict_map_key=False, max_ext_len=0,
                                  unicode_errors="surrogateescape")
    except SidecarInvalid:
        raise
    except Exception as exc:  # lz4 and msgpack raise their own classes for bad input
        raise SidecarInvalid(f"does not decode: {type(exc).__name__}") from None
    if type(content) is not dict or content.get("version") != VERSION:
        raise SidecarInvalid("another sidecar version")
    if content.get("unicorn") != unicorn.__version__:
        raise SidecarInvalid("made by another Unicorn version")
    if content.get("trace") != trace_identity(trace):
        raise SidecarInvalid("stale: made for another trace")
    return content
