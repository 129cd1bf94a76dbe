"""The trace header: the machine a trace was recorded on, the guest image included.

A trace is self-contained: replay needs nothing but the trace file, so the header
carries the complete machine configuration and the guest ELF itself.
"""

from __future__ import annotations

import hashlib
import math
import time
import zlib
from dataclasses import dataclass, field
from functools import cached_property

from trace_format import layout


@dataclass(frozen=True)
class MachineConfig:
    """Everything that fixes the machine a guest boots on.

    Args:
        mem_size: bytes of guest RAM, a multiple of the 4 KiB page size.
        cpu_model: the pinned Unicorn CPU model name, e.g. "qemu64".
        boot_args: the boot argument string passed to the guest.
        devices: the device set and its settings, any msgpack-able dict,
            e.g. {"sock": {"listen": "127.0.0.1:7000"}, "console": {}}.
        image_name: the name the image was given on the command line (appliance or path).
        image: the raw bytes of the guest ELF.
    """

    mem_size: int
    cpu_model: str
    boot_args: str
    devices: dict
    image_name: str
    image: bytes = field(repr=False)

    @cached_property
    def image_sha256(self) -> str:
        """Hex SHA-256 of ``image``; the header stores it and the reader checks it."""
        return hashlib.sha256(self.image).hexdigest()


@dataclass(frozen=True)
class TraceHeader:
    """The header of a trace file.

    Args:
        format_version: layout version of the file; a writer only writes FORMAT_VERSION.
        tool_version: version of the vmrr that recorded the trace.
        created_unix: when recording started, seconds since the Unix epoch.
        config: the machine.
        flags: behaviour differences of this recording, like rr's quirks,
            e.g. {"chaos_seed": 1234}; any msgpack-able dict.
    """

    format_version: int
    tool_version: str
    created_unix: float
    config: MachineConfig
    flags: dict = field(default_factory=dict)

    @classmethod
    def new(cls, config: MachineConfig, *, tool_version: str = "unknown",
            flags: dict | None = None, created_unix: float | None = None) -> "TraceHeader":
        """A header for a recording that starts now, in the current format version."""
        return cls(
            format_version=layout.FORMAT_VERSION,
            tool_version=tool_version,
            created_unix=time.time() if created_unix is None else created_unix,
            config=config,
            flags={} if flags is None else flags,
        )


def encode_header(header: TraceHeader) -> bytes:
    """The header's bytes on disk: prefix, header map, image.

    Raises:
        ValueError: a field has the wrong type or is beyond the format's caps.
        TypeError: devices or flags hold something msgpack cannot encode.
    """
    config = header.config
    if header.format_version != layout.FORMAT_VERSION:
        raise ValueError(f"this vmrr writes format version {layout.FORMAT_VERSION}, "
                         f"not {header.format_version}")
    _check_type("tool_version", header.tool_version, str)
    if not isinstance(header.created_unix, (int, float)) or isinstance(header.created_unix, bool) \
            or not math.isfinite(header.created_unix):
        raise ValueError(f"created_unix must be a finite number, not {header.created_unix!r}")
    _check_type("flags", header.flags, dict)
    _check_type("config.mem_size", config.mem_size, int)
    if not 0 < config.mem_size <= layout.MAX_MEM_SIZE or config.mem_size % layout.PAGE_SIZE:
        raise ValueError(f"config.mem_size {config.mem_size} must be a positive multiple of "
                         f"{layout.PAGE_SIZE} up to {layout.MAX_MEM_SIZE}")
    _check_type("config.cpu_model", config.cpu_model, str)
    _check_type("config.boot_args", config.boot_args, str)
    _check_type("config.devices", config.devices, dict)
    _check_type("config.image_name", config.image_name, str)
    if not isinstance(config.image, (bytes, bytearray, memoryview)):
        raise ValueError(f"config.image must be bytes, not {type(config.image).__name__}")
    image = bytes(config.image)
    if len(image) > layout.MAX_IMAGE_LEN:
        raise ValueError(f"guest image is {len(image)} bytes; the format caps it at "
                         f"{layout.MAX_IMAGE_LEN}")
    header_map = layout.make_packer().pack({
        "tool_version": header.tool_version,
        "created_unix": float(header.created_unix),
        "config": {
            "mem_size": config.mem_size,
            "cpu_model": config.cpu_model,
            "boot_args": config.boot_args,
            "devices": config.devices,
            "image_name": config.image_name,
            "image_sha256": hashlib.sha256(image).hexdigest(),
        },
        "flags": header.flags,
    })
    if len(header_map) > layout.MAX_HEADER_LEN:
        raise ValueError(f"header is {len(header_map)} bytes without the image; the format "
                         f"caps it at {layout.MAX_HEADER_LEN}")
    fields = layout.HEADER_FIELDS.pack(layout.FILE_MAGIC, layout.FORMAT_VERSION,
                                       len(header_map), len(image))
    crc = zlib.crc32(header_map, zlib.crc32(fields))
    return fields + layout.HEADER_CRC.pack(crc) + header_map + image


# The header map's schema: dotted field name -> (type, check of the value or None, what
# the check wants). A new field adds a row here; decode_header_map checks every row, and
# a check names the field in its error. Upper bounds keep every later use of a value safe
# (time.localtime of created_unix, mmap of mem_size, ...).
MAX_TEXT = 4096
MAX_CREATED_UNIX = 253_402_300_799.0       # 9999-12-31 23:59:59 UTC, the last time localtime formats
HEADER_SCHEMA: dict[str, tuple[type, object, str]] = {
    "tool_version": (str, lambda v: len(v) <= 256, "at most 256 characters"),
    "created_unix": (float, lambda v: math.isfinite(v) and 0 <= v <= MAX_CREATED_UNIX,
                     "a time between 1970 and 9999"),
    "flags": (dict, lambda v: all(type(k) is str for k in v), "a map with str keys"),
    "config": (dict, None, ""),
    "config.mem_size": (int, lambda v: 0 < v <= layout.MAX_MEM_SIZE and not v % layout.PAGE_SIZE,
                        f"a positive multiple of {layout.PAGE_SIZE} up to {layout.MAX_MEM_SIZE}"),
    "config.cpu_model": (str, lambda v: len(v) <= 64, "at most 64 characters"),
    "config.boot_args": (str, lambda v: len(v.encode("utf-8", "surrogatepass")) <= MAX_TEXT,
                         f"at most {MAX_TEXT} bytes"),
    "config.devices": (dict, lambda v: all(type(k) is str for k in v), "a map with str keys"),
    "config.image_name": (str, lambda v: 0 < len(v) <= MAX_TEXT, f"1 to {MAX_TEXT} characters"),
    "config.image_sha256": (str, lambda v: len(v) == 64 and all(c in "0123456789abcdef" for c in v),
                            "64 lowercase hex digits"),
}
# Known flags and their checks; unknown flags are kept (a newer recorder may add some).
FLAG_SCHEMA: dict[str, tuple[type, object, str]] = {
    "chaos_seed": (int, lambda v: 0 <= v < 1 << 64, "an integer in 0..2^64-1"),
    # How the recorder counted instructions (informational: either counter replays it).
    "counter": (str, lambda v: v in ("fast", "reference"), "fast or reference"),
    # A Linux program's state numbers its open file descriptions by process and descriptor
    # (a restored kernel numbers them the same); absent: in the order they were made.
    "linux_state": (str, lambda v: v == "canonical", "canonical"),
    # A flight recorder's window (docs/flight-recorder.md): the trace starts at its
    # checkpoint 0, a full one at start_icount, instead of at boot.
    "window": (dict, lambda v: window_problem(v) is None, "a window map (docs/trace-format.md)"),
}

# The window map's fields: name -> (type, check). start_icount is required; the others
# describe where the window came from (vmrr info shows them) and are optional.
WINDOW_FIELDS: dict[str, tuple[type, object]] = {
    "start_icount": (int, lambda v: 0 <= v < 1 << 64),
    "start_unix": (float, lambda v: math.isfinite(v) and 0 <= v <= MAX_CREATED_UNIX),
    "end_icount": (int, lambda v: 0 <= v < 1 << 64),
    "end_unix": (float, lambda v: math.isfinite(v) and 0 <= v <= MAX_CREATED_UNIX),
    "recording_started_unix": (float, lambda v: math.isfinite(v) and 0 <= v <= MAX_CREATED_UNIX),
    "trigger": (str, lambda v: len(v) <= 256),
    "segment": (int, lambda v: 0 <= v < 1 << 32),
    "segments": (int, lambda v: 0 <= v < 1 << 32),
    "dropped_segments": (int, lambda v: 0 <= v < 1 << 32),
    "dropped_bytes": (int, lambda v: 0 <= v < 1 << 64),
    "dropped_seconds": (float, lambda v: math.isfinite(v) and 0 <= v <= MAX_CREATED_UNIX),
}


def window_problem(window: dict) -> str | None:
    """Why ``window`` (header flag ``window``) is malformed, or None."""
    if type(window.get("start_icount")) is not int:
        return "start_icount is missing"
    for name, value in window.items():
        field_ = WINDOW_FIELDS.get(name)
        if field_ is None:
            if type(name) is not str or type(value) not in (int, float, str, bool, type(None)):
                return f"entry {name!r} is not a scalar"
            continue
        kind, check = field_
        if kind is float and type(value) is int:
            value = float(value)
        if type(value) is not kind or not check(value):
            return f"{name} is out of range"
    return None


def _field(top: dict, dotted: str) -> object:
    value: object = top
    for part in dotted.split("."):
        value = value.get(part) if type(value) is dict else None
    return value


def _check_schema(values: dict, schema: dict, prefix: str = "") -> None:
    for name, (kind, check, wanted) in schema.items():
        value = _field(values, name)
        if kind is float and type(value) is int:
            value = float(value) if abs(value) < 1 << 53 else math.inf
        if type(value) is not kind:
            shown = "missing" if value is None else f"a {type(value).__name__}"
            raise ValueError(f"header field {prefix}{name} is {shown}, not a {kind.__name__}")
        if check is not None and not check(value):
            raise ValueError(f"header field {prefix}{name} is out of range (wants {wanted})")


def decode_header_map(value: object, image: bytes) -> TraceHeader:
    """Build a TraceHeader from the decoded header map and the image bytes.

    Every field of HEADER_SCHEMA (and of FLAG_SCHEMA, when present) is checked for its
    type and range before use.

    Raises:
        ValueError: a field is missing, has the wrong type or is out of range (the
            message names it), or the image does not match its recorded SHA-256.
    """
    top = _need(value, "header", dict)
    _check_schema(top, HEADER_SCHEMA)
    flags = top["flags"]
    _check_schema({k: v for k, v in flags.items() if k in FLAG_SCHEMA},
                  {k: v for k, v in FLAG_SCHEMA.items() if k in flags}, "flags.")
    config = top["config"]
    if hashlib.sha256(image).hexdigest() != config["image_sha256"]:
        raise ValueError("the embedded guest image does not match its recorded SHA-256")
    machine = MachineConfig(
        mem_size=config["mem_size"],
        cpu_model=config["cpu_model"],
        boot_args=config["boot_args"],
        devices=config["devices"],
        image_name=config["image_name"],
        image=image,
    )
    return TraceHeader(
        format_version=layout.FORMAT_VERSION,
        tool_version=top["tool_version"],
        created_unix=float(top["created_unix"]),
        config=machine,
        flags=flags,
    )


def _check_type(name: str, value: object, kind: type) -> None:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"{name} must be {kind.__name__}, not {type(value).__name__}")


def _need(value: object, name: str, kind: type):
    if type(value) is not kind:
        shown = "missing" if value is None else f"a {type(value).__name__}"
        raise ValueError(f"header field {name} is {shown}, not a {kind.__name__}")
    return value
