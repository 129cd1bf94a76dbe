"""Prebuilt vmrr guest images: the appliances and the small test guests.

The ELF files in ``images/`` are built by ``make -C guests`` and shipped with the
package, so running a built-in guest needs no compiler.
"""

from __future__ import annotations

import re
from pathlib import Path

IMAGES_DIR: Path = Path(__file__).resolve().parent / "images"

_APPLIANCES = ("kvstore", "kvstore-race", "cpubench")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*\Z")


def builtin_names() -> list[str]:
    """Names of the built-in appliances (test guests are not listed)."""
    return list(_APPLIANCES)


def image_path(name: str) -> Path:
    """Path of the built-in image called ``name`` (an appliance, or a ``t_*`` test guest).

    Args:
        name: e.g. ``kvstore``, ``kvstore-race``, ``cpubench`` or ``t_hello``.

    Returns:
        ``IMAGES_DIR / f"{name}.elf"``.

    Raises:
        KeyError: ``name`` is not a built-in appliance nor a test guest that exists.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise KeyError(name)
    path = IMAGES_DIR / f"{name}.elf"
    if name in _APPLIANCES or (name.startswith("t_") and path.is_file()):
        return path
    raise KeyError(name)
