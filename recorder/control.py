"""``vmrr save PID -o FILE``: asking a running flight recorder to save its window.

The recorder listens on a unix socket in a private directory of the user's
(``$XDG_RUNTIME_DIR/vmrr`` or ``/tmp/vmrr-UID``, mode 0700, checked to be a real
directory of this user's and no one else's), named ``ring-PID.sock`` and itself mode
0600; it also checks the peer's uid (SO_PEERCRED) on every connection. A request is one
JSON line, ``{"output": "/abs/path.vmrr", "force": false}``; the answer, sent once the
trace is written, one JSON line: ``{"ok": true, "path", "bytes", "start_icount",
"end_icount", "seconds"}`` or ``{"ok": false, "error": "..."}``.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import struct
import tempfile
import threading

from vmm.errors import HostError, UsageError

MAX_REQUEST = 64 * 1024
SAVE_TIMEOUT = 600.0


def control_dir(*, create: bool) -> str:
    """The private directory of this user's recorder sockets.

    Raises:
        HostError: it is not a directory of this user's that only they can enter.
    """
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime) and os.path.isdir(runtime):
        path = os.path.join(runtime, "vmrr")
    else:
        path = os.path.join(tempfile.gettempdir(), f"vmrr-{os.getuid()}")
    if create:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise HostError(f"{path}: cannot create the recorder socket directory: {exc.strerror}") from None
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return path
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise HostError(f"{path}: not a private directory of this user's (a directory, owned by uid "
                        f"{os.getuid()}, mode 0700); remove it")
    return path


def socket_path(pid: int, *, create: bool = False) -> str:
    return os.path.join(control_dir(create=create), f"ring-{pid}.sock")


class ControlServer:
    """The recorder's end: each request becomes ``session.request_save`` and waits for it.

    Args:
        session: the RecordSession (with a ring).
    """

    def __init__(self, session) -> None:
        self.session = session
        self.path = socket_path(os.getpid(), create=True)
        try:
            os.unlink(self.path)                   # a stale socket of a recorder with our pid
        except FileNotFoundError:
            pass
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            self.sock.bind(self.path)
        except OSError as exc:
            self.sock.close()
            raise HostError(f"{self.path}: cannot listen for vmrr save: {exc.strerror}") from None
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        self.sock.listen(8)
        self._closed = False
        threading.Thread(target=self._serve, name="vmrr-ring-control", daemon=True).start()

    def _serve(self) -> None:
        while not self._closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            try:
                creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
                _pid, uid, _gid = struct.unpack("3i", creds)
                if uid != os.getuid():
                    return self._answer(conn, {"ok": False, "error": "refused: another user"})
                request = json.loads(_read_line(conn))
                output = request.get("output") if type(request) is dict else None
                if type(output) is not str or not os.path.isabs(output):
                    return self._answer(conn, {"ok": False, "error": "the request names no absolute output path"})
                done = threading.Event()
                result: list = []
                self.session.request_save("vmrr save", output, overwrite=request.get("force") is True,
                                          reply=lambda job: (result.append(job), done.set()))
                conn.settimeout(None)
                if not done.wait(SAVE_TIMEOUT):
                    return self._answer(conn, {"ok": False, "error": "the save did not finish in time"})
                job = result[0]
                if job.error is not None:
                    return self._answer(conn, {"ok": False, "error": job.error})
                stats = job.stats
                self._answer(conn, {"ok": True, "path": job.output, "bytes": stats.bytes,
                                    "start_icount": stats.start_icount, "end_icount": stats.end_icount,
                                    "seconds": round(job.seconds, 3),
                                    "history_seconds": job.window["end_unix"] - job.window["start_unix"]})
            except (OSError, ValueError):
                return

    @staticmethod
    def _answer(conn: socket.socket, answer: dict) -> None:
        try:
            conn.sendall(json.dumps(answer).encode() + b"\n")
        except OSError:
            pass

    def close(self) -> None:
        self._closed = True
        try:
            self.sock.close()
        finally:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


def _read_line(conn: socket.socket) -> str:
    data = b""
    while not data.endswith(b"\n"):
        more = conn.recv(4096)
        if not more:
            break
        data += more
        if len(data) > MAX_REQUEST:
            raise ValueError("request too long")
    return data.decode("utf-8")


def ask_save(pid: int, output: str, *, force: bool = False) -> dict:
    """Ask the flight recorder running as ``pid`` to save its window to ``output``.

    Returns:
        The recorder's answer (``ok``, ``path``, ``bytes``, ... or ``error``).

    Raises:
        UsageError: no flight recorder of this user's runs as ``pid``.
        HostError: the recorder did not answer.
    """
    path = socket_path(pid)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            raise UsageError(f"no flight recorder (vmrr record --ring) of this user's runs as pid {pid} "
                             f"(no socket at {path})") from None
        except OSError as exc:
            raise HostError(f"{path}: {exc.strerror}") from None
        sock.sendall(json.dumps({"output": os.path.abspath(output), "force": force}).encode() + b"\n")
        sock.settimeout(SAVE_TIMEOUT + 10)
        try:
            line = _read_line(sock)
        except (OSError, ValueError) as exc:
            raise HostError(f"the recorder with pid {pid} did not answer: {exc}") from None
    finally:
        sock.close()
    try:
        answer = json.loads(line)
    except ValueError:
        raise HostError(f"the recorder with pid {pid} closed the connection without an answer") from None
    if type(answer) is not dict:
        raise HostError(f"the recorder with pid {pid} answered {line[:80]!r}")
    return answer
