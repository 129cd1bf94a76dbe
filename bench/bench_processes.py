"""Process trees: what fork, exec and many processes cost under vmrr, side by side in one run.

  churn   bash -c 'for i in $(seq N); do /bin/true; done' natively, under `vmrr run` and
          `vmrr record`: wall time, and the trace's bytes per exec.
  make    `make -j2` of a small C project (three objects and a link: make, sh, gcc, cc1,
          as, collect2, ld) natively and under `vmrr record`: wall time, trace size.
  nginx   nginx with a master and two workers serving a small file to a keep-alive client
          for a fixed number of requests: requests/s natively, under qemu-x86_64 (the same
          TCG engine with no recording: the ceiling) and under `vmrr record`.

    .venv/bin/python bench/bench_processes.py                 # all three
    .venv/bin/python bench/bench_processes.py churn --count 50

Each recording is replayed --verify once (not timed) so a figure never comes from a trace
that does not replay.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VMRR = [sys.executable, str(REPO / "vmrr.py")]
NGINX = "/usr/sbin/nginx"
QEMU = shutil.which("qemu-x86_64")


def timed(argv, **kw) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, **kw)
    return time.perf_counter() - start, done


def replay_ok(trace: Path) -> None:
    done = subprocess.run([*VMRR, "replay", str(trace), "--verify"], capture_output=True, text=True)
    if "verified: final registers" not in done.stderr:
        raise SystemExit(f"{trace} does not replay --verify:\n{done.stderr[-2000:]}")


def churn(work: Path, count: int) -> None:
    line = f"for i in $(seq {count}); do /bin/true; done"
    argv = ["/bin/bash", "-c", line]
    native, _ = timed(argv)
    run, done = timed([*VMRR, "run", "--", *argv])
    assert done.returncode == 0, done.stderr
    trace = work / "churn.vmrr"
    record, done = timed([*VMRR, "record", "-o", str(trace), "--", *argv])
    assert done.returncode == 0, done.stderr
    replay_ok(trace)
    size = trace.stat().st_size
    print(f"churn ({count} x /bin/true from bash): native {native:.2f} s, vmrr run {run:.1f} s "
          f"({run / native:.0f}x), vmrr record {record:.1f} s ({record / native:.0f}x); "
          f"trace {size / 1e6:.1f} MB, {size / count / 1e3:.1f} kB per exec")


def make(work: Path) -> None:
    project = work / "project"
    project.mkdir()
    (project / "a.c").write_text('#include <stdio.h>\nint b(int); int c(int);\n'
                                 'int main(void) { printf("%d %d\\n", b(20), c(22)); return 0; }\n')
    (project / "b.c").write_text("int b(int x) { return x * 2; }\n")
    (project / "c.c").write_text("int c(int x) { return x + 20; }\n")
    (project / "Makefile").write_text("prog: a.o b.o c.o\n\tgcc -o $@ $^\n%.o: %.c\n\tgcc -O1 -c -o $@ $<\n"
                                      "clean:\n\trm -f *.o prog\n")
    native, done = timed(["make", "-j2", "-s"], cwd=project)
    assert done.returncode == 0, done.stderr
    subprocess.run(["make", "-s", "clean"], cwd=project, check=True)
    trace = work / "make.vmrr"
    record, done = timed([*VMRR, "record", "-o", str(trace), "--", "make", "-j2", "-s"], cwd=project)
    assert done.returncode == 0, done.stderr
    built = subprocess.run([str(project / "prog")], capture_output=True, text=True).stdout
    assert built == "40 42\n", built
    replay_ok(trace)
    print(f"make -j2 (3 objects + link): native {native:.2f} s, vmrr record {record:.1f} s "
          f"({record / native:.0f}x); trace {trace.stat().st_size / 1e6:.1f} MB")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(prefix: list[str], work: Path, requests: int) -> float:
    """Requests per second nginx (master + 2 workers) serves to one keep-alive client."""
    port = _free_port()
    site = work / f"site-{port}"
    (site / "html").mkdir(parents=True)
    (site / "tmp").mkdir()
    (site / "html" / "index.html").write_text("hello from nginx\n" * 8)
    conf = site / "nginx.conf"
    user = "user root;\n" if os.getuid() == 0 else ""      # natively, workers read our private dir
    conf.write_text(f"{user}worker_processes 2;\nerror_log {site}/error.log;\npid {site}/nginx.pid;\n"
                    f"events {{ worker_connections 64; }}\nhttp {{ access_log off; client_body_temp_path {site}/tmp;\n"
                    f"server {{ listen 127.0.0.1:{port}; root {site}/html; }} }}\n")
    server = subprocess.Popen([*prefix, NGINX, "-c", str(conf), "-g", "daemon off;"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                client = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                client.request("GET", "/")
                client.getresponse().read()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit(f"nginx under {prefix or 'nothing'} never answered")
                time.sleep(0.3)
        start = time.perf_counter()
        for _ in range(requests):
            client.request("GET", "/")
            assert client.getresponse().read().startswith(b"hello")
        rate = requests / (time.perf_counter() - start)
        client.close()
    finally:
        server.send_signal(signal.SIGQUIT if not prefix or prefix[0] != VMRR[0] else signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
    return rate


def nginx(work: Path, requests: int) -> None:
    if not Path(NGINX).is_file():
        print("nginx: not installed (apt-get install nginx-light)")
        return
    native = _serve([], work, requests)
    qemu = _serve([QEMU], work, requests) if QEMU else None
    trace = work / "web.vmrr"
    record = _serve([*VMRR, "record", "-o", str(trace), "--"], work, requests)
    replay_ok(trace)
    qemu_text = f"qemu-x86_64 {qemu:.0f}/s, " if qemu else "qemu-x86_64 not installed, "
    print(f"nginx master + 2 workers, {requests} keep-alive requests: native {native:.0f}/s, {qemu_text}"
          f"vmrr record {record:.0f}/s ({native / record:.0f}x slower than native"
          + (f", {qemu / record:.1f}x slower than qemu" if qemu else "") + ")")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("which", nargs="*", choices=["churn", "make", "nginx"], default=None)
    parser.add_argument("--count", type=int, default=200, help="execs in the churn loop (default 200)")
    parser.add_argument("--requests", type=int, default=500, help="nginx requests (default 500)")
    args = parser.parse_args()
    which = args.which or ["churn", "make", "nginx"]
    with tempfile.TemporaryDirectory(prefix="vmrr-bench-proc-") as tmp:
        work = Path(tmp)
        if "churn" in which:
            churn(work, args.count)
        if "make" in which:
            make(work)
        if "nginx" in which:
            nginx(work, args.requests)


if __name__ == "__main__":
    main()
