"""Disk full: record onto a small tmpfs until it fills, then check what the recorder said and left.

    sudo nice -n 10 python bench/bench_diskfull.py [--sizes 192k,256k,512k,1m,4m] [--seconds 60]

For each size, mounts a tmpfs of that size (needs root), records kvstore under
redis-benchmark into it, and waits for the recorder to stop on its own (ENOSPC) or
for --seconds. Reports the recorder's exit code and error line (target: exit 2, one
line, no traceback), what is left on disk, and whether `vmrr replay --verify` of the
.incomplete file verifies the recorded prefix (target: exit 0).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from bench_kvstore import free_port  # noqa: E402


def one(size: str, seconds: float) -> dict:
    mount = tempfile.mkdtemp(prefix="vmrr-full-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", mount], check=True)
    try:
        trace = os.path.join(mount, "full.vmrr")
        port = free_port()
        rec = subprocess.Popen([sys.executable, "-m", "vmrr", "record", "kvstore", "--listen",
                                f"127.0.0.1:{port}", "--no-stdin", "-o", trace], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        load = subprocess.Popen(["redis-benchmark", "-p", str(port), "-t", "set,get", "-c", "10",
                                 "-n", "100000000", "-r", "100000", "-q"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        interrupted = False
        try:
            rec.wait(seconds)
        except subprocess.TimeoutExpired:             # it never filled: stop it like a user
            interrupted = True
            rec.send_signal(2)
            rec.wait(60)
        load.kill()
        load.wait()
        err = rec.stderr.read()
        left = sorted(os.listdir(mount))
        incomplete = trace + ".incomplete"
        replay = None
        target = incomplete if os.path.exists(incomplete) else trace if os.path.exists(trace) else None
        if target:
            replay = subprocess.run([sys.executable, "-m", "vmrr", "replay", target, "--verify", "--quiet"],
                                    cwd=ROOT, capture_output=True, text=True, timeout=600)
        errors = [line for line in err.splitlines() if line.startswith("vmrr: error")]
        found = re.search(r"verified: (\d+) state digests", replay.stderr) if replay else None
        return {"size": size, "exit": rec.returncode, "interrupted": interrupted, "errors": errors,
                "traceback": "Traceback" in err or "internal error" in err, "left": left,
                "replay_exit": None if replay is None else replay.returncode,
                "digests": int(found.group(1)) if found else 0,
                "replay_tail": "" if replay is None else replay.stderr.strip().splitlines()[-1][:160]}
    finally:
        subprocess.run(["umount", mount], check=False)
        os.rmdir(mount)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="192k,256k,512k,1m,4m")
    parser.add_argument("--seconds", type=float, default=60.0)
    opts = parser.parse_args()
    print("disk full: kvstore recorded under redis-benchmark onto a tmpfs of each size")
    for size in opts.sizes.split(","):
        r = one(size, opts.seconds)
        print(f"  tmpfs {r['size']:>5}: recorder exit {r['exit']}"
              f"{' (not full after --seconds: stopped with SIGINT)' if r['interrupted'] else ''}, "
              f"{len(r['errors'])} error line(s) "
              f"{r['errors'][:1]}, traceback {r['traceback']}; left {r['left']}; replay --verify exit "
              f"{r['replay_exit']} with {r['digests']} digests ({r['replay_tail']})", flush=True)


if __name__ == "__main__":
    main()
