"""Shared memory objects: one copy of some memory that every mapping of it sees.

A ``MAP_SHARED`` mapping does not own its pages: they belong to an object, and each
mapping — in this process or another, at any address — maps the object's frames. Linux
calls these shmem or page-cache pages; here there are three kinds of object:

- ``anon``: a ``MAP_SHARED | MAP_ANONYMOUS`` mapping (inherited across fork);
- ``file``: a shared mapping of a host file — a POSIX shared memory object under
  /dev/shm, a memfd, any file opened for writing — keyed by the file's device and inode,
  so that unrelated processes mapping the same file share it. Pages not yet in the
  object are filled from the file's content as the mapping call read it (recorded like
  every host answer);
- ``sysv``: a System V segment (vmm/linux/ipc.py: shmget, shmat).

A VMA names its object as ``shm:N`` where a private mapping names its file's content id;
the VMA's offset is the page offset into the object. The object holds one reference to
each of its frames and every page-table entry mapping one holds another, so a frame goes
back only when the object is gone and nothing maps it. Anonymous objects go when no
mapping names them; System V ones when removed (IPC_RMID) and unmapped; file objects
stay while the machine runs (the file outlives its mappings, and a later mapping must
see what earlier ones wrote).

Everything is in ``state()``: checkpoints and time travel restore it with the frames.
"""

from __future__ import annotations

from typing import Callable

PAGE = 0x1000
PREFIX = "shm:"
KINDS = ("anon", "file", "sysv")


def is_shared(file_id: str | None) -> bool:
    """True for a VMA's ``file`` that names a shared object rather than file content."""
    return file_id is not None and file_id.startswith(PREFIX)


class SharedObject:
    """Its frames by page index, and where pages not yet given come from."""

    __slots__ = ("oid", "kind", "key", "pages", "sources", "keep")

    def __init__(self, oid: int, kind: str, key: str | None) -> None:
        self.oid = oid
        self.kind = kind
        self.key = key                      # "dev:ino" of a file object
        self.pages: dict[int, int] = {}     # page index -> frame
        self.sources: list[list] = []       # [first page, pages, content id]: newest last
        self.keep = kind != "anon"          # a file, or a System V segment not yet removed

    def as_list(self) -> list:
        return [self.oid, self.kind, self.key, sorted([i, f] for i, f in self.pages.items()),
                [list(s) for s in self.sources], self.keep]


class SharedMemory:
    """Every shared object of the machine (all processes').

    Args:
        frames: the machine's physical frames (vmm/linux/memory.py ``Frames``).
        write_phys: writes bytes at a guest-physical address (through Unicorn).
        file_content: the bytes of a content id.
    """

    def __init__(self, frames, write_phys: Callable[[int, bytes], None],
                 file_content: Callable[[str], bytes]) -> None:
        self.frames = frames
        self.write_phys = write_phys
        self.file_content = file_content
        self.objects: dict[int, SharedObject] = {}
        self.next = 1

    def new(self, kind: str, key: str | None = None) -> str:
        """A new empty object; returns the id a VMA names it by."""
        obj = SharedObject(self.next, kind, key)
        self.objects[obj.oid] = obj
        self.next += 1
        return PREFIX + str(obj.oid)

    def get(self, file_id: str) -> SharedObject:
        return self.objects[int(file_id[len(PREFIX):])]

    def _file_object(self, key: str) -> SharedObject | None:
        return next((o for o in self.objects.values() if o.kind == "file" and o.key == key), None)

    def for_file(self, key: str) -> str:
        """The object of the host file ``key`` ("dev:ino"), made on first use."""
        obj = self._file_object(key)
        return self.new("file", key) if obj is None else PREFIX + str(obj.oid)

    def add_source(self, file_id: str, first: int, content_id: str) -> None:
        """Pages from ``first`` on that the object does not hold yet come from this content."""
        obj = self.get(file_id)
        pages = (len(self.file_content(content_id)) + PAGE - 1) // PAGE
        if pages and any(first + i not in obj.pages for i in range(pages)):
            obj.sources.append([first, pages, content_id])

    def frame(self, file_id: str, index: int) -> int:
        """The frame of page ``index``, given now if it has none, with one more reference
        (the caller's page-table entry)."""
        obj = self.get(file_id)
        frame = obj.pages.get(index)
        if frame is None:
            frame = self.frames.alloc()
            content = b""
            for first, count, content_id in reversed(obj.sources):
                if first <= index < first + count:
                    off = (index - first) * PAGE
                    content = self.file_content(content_id)[off:off + PAGE]
                    break
            self.write_phys(frame * PAGE, content.ljust(PAGE, b"\0"))
            obj.pages[index] = frame
        self.frames.share(frame)
        return frame

    def maps_file(self, key: str) -> bool:
        return self._file_object(key) is not None

    def written(self, key: str, offset: int, data: bytes) -> None:
        """``data`` was written at ``offset`` of the host file ``key`` (write, pwrite): the
        pages its object holds show it, as the page cache would."""
        obj = self._file_object(key)
        if obj is None or not data:
            return
        pos = 0
        while pos < len(data):
            index, inside = divmod(offset + pos, PAGE)
            n = min(len(data) - pos, PAGE - inside)
            frame = obj.pages.get(index)
            if frame is not None:
                self.write_phys(frame * PAGE + inside, data[pos:pos + n])
            pos += n

    def collect(self, in_use: set[str]) -> None:
        """Objects no VMA names (``in_use``) and nothing keeps: their frames go back."""
        for oid in [oid for oid, obj in self.objects.items()
                    if not obj.keep and PREFIX + str(oid) not in in_use]:
            for frame in self.objects.pop(oid).pages.values():
                self.frames.free(frame)

    # -- state -----------------------------------------------------------------------

    def state(self) -> list:
        return [self.next, [obj.as_list() for obj in self.objects.values()]]

    def load_state(self, state: list) -> None:
        self.next, objects = state
        self.objects = {}
        for oid, kind, key, pages, sources, keep in objects:
            obj = SharedObject(oid, kind, key)
            obj.pages = {int(i): int(f) for i, f in pages}
            obj.sources = [list(s) for s in sources]
            obj.keep = bool(keep)
            self.objects[oid] = obj
