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


def decode_header_map(value: object, image: bytes) -> TraceHeader:
    """Build a TraceHeader from the decoded header map and the image bytes.

    Raises:
        ValueError: a field is missing, has the wrong type, or the image does not
            match its recorded SHA-256.
    """
    top = _need(value, "header", dict)
    config = _need(top.get("config"), "config", dict)
    created = top.get("created_unix")
    if not isinstance(created, (int, float)) or isinstance(created, bool) or not math.isfinite(created):
        raise ValueError(f"header field created_unix is {created!r}, not a finite number")
    mem_size = _need(config.get("mem_size"), "config.mem_size", int)
    if not 0 < mem_size <= layout.MAX_MEM_SIZE or mem_size % layout.PAGE_SIZE:
        raise ValueError(f"header field config.mem_size is {mem_size}, not a positive multiple "
                         f"of {layout.PAGE_SIZE} up to {layout.MAX_MEM_SIZE}")
    digest = _need(config.get("image_sha256"), "config.image_sha256", str)
    if hashlib.sha256(image).hexdigest() != digest:
        raise ValueError("the embedded guest image does not match its recorded SHA-256")
    machine = MachineConfig(
        mem_size=mem_size,
        cpu_model=_need(config.get("cpu_model"), "config.cpu_model", str),
        boot_args=_need(config.get("boot_args"), "config.boot_args", str),
        devices=_need(config.get("devices"), "config.devices", dict),
        image_name=_need(config.get("image_name"), "config.image_name", str),
        image=image,
    )
    return TraceHeader(
        format_version=layout.FORMAT_VERSION,
        tool_version=_need(top.get("tool_version"), "tool_version", str),
        created_unix=float(created),
        config=machine,
        flags=_need(top.get("flags"), "flags", dict),
    )


def _check_type(name: str, value: object, kind: type) -> None:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"{name} must be {kind.__name__}, not {type(value).__name__}")


def _need(value: object, name: str, kind: type):
    if type(value) is not kind:
        shown = "missing" if value is None else f"a {type(value).__name__}"
        raise ValueError(f"header field {name} is {shown}, not a {kind.__name__}")
    return value
