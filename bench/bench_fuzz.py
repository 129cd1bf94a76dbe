"""The long fuzz campaign: hundreds of thousands of hostile traces and sidecars through vmrr.

    nice -n 10 python bench/bench_fuzz.py [--mutants 100000] [--workers 2] [--seed 11] [--minutes M]

Records the corpus of tools/tracefuzz.py (every kind of trace vmrr writes, small), then
each worker process runs its share of the mutants in-process: 60 % structure-aware
(one decoded value changed, framed again with valid checksums), 25 % byte-level with
checksums recomputed, 15 % raw byte-level; 1 in 12 is a sidecar mutant instead, of an
appliance's, a Linux program's or a multi-threaded one's sidecar (raw bytes, a decoded
value changed with the old MAC kept, or one changed and re-signed with this user's key:
then time travel must still show the trace's history and a straight replay's states, or
reject it). Targets, weighted: `info`,
`info --json`, `events --json`, `ps --recover --json`, `replay --verify` (CLI), a verified replay with the
wrong-answer oracle, entering every checkpoint with its oracle, and time travel.

Counts tracebacks (anything but a VmrrError escaping, "internal error" included),
hangs (> 30 s), wrong answers, exit codes, and the peak RSS of each worker. Targets:
0 tracebacks, 0 hangs, 0 wrong answers, bounded RSS. With --minutes, each worker also
stops at that deadline (the report then says how many mutants ran).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import tracefuzz as tf  # noqa: E402

MAX_MEM = 256 << 20
TARGETS = [("info", 2), ("info --json", 2), ("events --json", 3), ("ps", 1), ("replay --verify", 2),
           ("verified replay", 2), ("checkpoint entry", 2), ("time travel", 1)]


def tf_replay(path: str):
    from replay import Replay
    return Replay(path, verify=False, max_mem=MAX_MEM)


def run_target(target: str, path: str, ref: tf.Reference) -> tf.Outcome:
    if target == "info":
        return tf.run_cli(["info", path, "--recover"])
    if target == "info --json":
        return tf.run_cli(["info", path, "--json"])
    if target == "events --json":
        return tf.run_cli(["events", path, "--json"])
    if target == "ps":                   # the process list, or the tree rebuilt from the events
        return tf.run_cli(["ps", path, "--recover", "--json"])
    if target == "replay --verify":
        return tf.run_cli(["replay", path, "--verify", "--quiet", "--max-mem", "256M"])
    if target == "verified replay":
        return tf.run_api(tf.replay_verified(path, ref, max_mem=MAX_MEM))
    if target == "checkpoint entry":
        return tf.run_api(tf.enter_checkpoints(path, ref, max_mem=MAX_MEM))
    return tf.run_api(tf.time_travel(path, max_mem=MAX_MEM))


def worker(args) -> dict:
    index, count, seed, corpus_dir, work_dir, deadline = args
    os.environ["VMRR_CACHE_DIR"] = os.path.join(work_dir, "cache")
    from replay import sidecar
    from replay.timetravel import TimeTravel

    traces = {kind: str(Path(corpus_dir) / Path(path).name)
              for kind, path in json.loads(Path(corpus_dir, "corpus.json").read_text()).items()}
    refs = {kind: tf.reference(path, max_mem=MAX_MEM) for kind, path in traces.items()}
    originals = {kind: Path(path).read_bytes() for kind, path in traces.items()}
    decoded = {kind: tf.decode(data) for kind, data in originals.items()}
    # Sidecars: made here, judged against a fresh build's history and a straight replay's
    # states at the positions the action visits.
    key = sidecar.sidecar_key()
    sides = {}
    for kind in [k for k in ("checkpoints", "linux", "linux-threads", "linux-processes") if k in traces]:
        side_trace = os.path.join(work_dir, f"side-{kind}.vmrr")
        Path(side_trace).write_bytes(originals[kind])
        with TimeTravel(side_trace, memory_budget=64 << 20, max_mem=MAX_MEM) as tt:
            history = (tt.last_icount, tt.console_output(tt.last_icount))
        middle = history[0] // 2
        states = {}
        for where in (middle - 1, middle):
            with tf_replay(side_trace) as rep:
                rep.run(until=where)
                states[where] = rep.machine.state_digest()
        sides[kind] = (side_trace, history, states, Path(sidecar.sidecar_path(side_trace)).read_bytes())
    rng = random.Random(f"{seed}-{index}")
    names, weights = [t[0] for t in TARGETS], [t[1] for t in TARGETS]
    stats = {"runs": 0, "tracebacks": [], "hangs": [], "wrong": [], "codes": Counter(),
             "by_target": Counter(), "slowest": 0.0}
    start = time.perf_counter()
    for n in range(count):
        if deadline is not None and time.time() >= deadline:
            break
        if rng.random() < 1 / 12:
            side_kind = rng.choice(list(sides))
            side_trace, history, states, side_good = sides[side_kind]
            roll = rng.random()
            if roll < 1 / 3:
                data, changed, signed, what = tf.byte_mutant(side_good, rng, fix=False), True, False, "bytes"
            else:
                # Re-signed with this user's key: only its owner (or a stolen key) can.
                signed = roll >= 2 / 3
                data, changed = tf.sidecar_structure_mutant(side_good, rng, key if signed else None)
                what = "re-signed" if signed else "old MAC"
            what = f"{side_kind}/{what}"
            Path(sidecar.sidecar_path(side_trace)).write_bytes(data)

            def action(changed=changed, signed=signed, side_trace=side_trace, history=history, states=states):
                with TimeTravel(side_trace, memory_budget=64 << 20, max_mem=MAX_MEM) as tt:
                    if changed and not signed and tt.loaded_from_sidecar:
                        return "an altered sidecar was believed"
                    if (tt.last_icount, tt.console_output(tt.last_icount)) != history:
                        return "time travel shows another history (end or console) than the trace's"
                    middle = history[0] // 2
                    tt.seek(middle)
                    if tt.machine.state_digest() != states[middle]:
                        return f"time travel shows another state at {middle} than a straight replay"
                    tt.step_back()
                    if tt.machine.state_digest() != states[middle - 1]:
                        return f"time travel shows another state at {middle - 1} than a straight replay"
                return None
            target, outcome = "sidecar time travel", tf.run_api(action)
        else:
            kind = rng.choice(list(traces))
            roll = rng.random()
            if roll < 0.6:
                data, what = tf.structure_mutant(decoded[kind], rng)
            else:
                fix = roll < 0.85
                data, what = tf.byte_mutant(originals[kind], rng, fix=fix), ("bytes+crc" if fix else "bytes")
            mutant = os.path.join(work_dir, Path(traces[kind]).name)
            Path(mutant).write_bytes(data)
            target = rng.choices(names, weights)[0]
            outcome = run_target(target, mutant, refs[kind])
            what = f"{kind}/{what}"
        stats["runs"] += 1
        stats["codes"][str(outcome.code)] += 1
        stats["by_target"][target] += 1
        stats["slowest"] = max(stats["slowest"], outcome.seconds)
        label = f"#{n} {target} on {what}"
        if outcome.escaped:
            stats["tracebacks"].append(f"{label}: {outcome.escaped}")
        if outcome.hang:
            stats["hangs"].append(label)
        if outcome.wrong:
            stats["wrong"].append(f"{label}: {outcome.wrong}")
        if n and n % 2000 == 0:
            print(f"  worker {index}: {n} mutants, {n / (time.perf_counter() - start):.0f}/s, "
                  f"{len(stats['tracebacks'])} tracebacks, {len(stats['wrong'])} wrong, "
                  f"RSS {tf.rss_mb():.0f} MiB", flush=True)
    stats["seconds"] = time.perf_counter() - start
    stats["peak_rss_mb"] = tf.peak_rss_mb()
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", default="11")
    parser.add_argument("--minutes", type=float, default=None, help="stop each worker after this long")
    opts = parser.parse_args()
    deadline = None if opts.minutes is None else time.time() + opts.minutes * 60
    with tempfile.TemporaryDirectory(prefix="vmrr-fuzz-") as tmp:
        corpus_dir = os.path.join(tmp, "corpus")
        os.makedirs(corpus_dir)
        traces = tf.build_corpus(corpus_dir)
        Path(corpus_dir, "corpus.json").write_text(json.dumps(traces))
        jobs = []
        for i in range(opts.workers):
            work = os.path.join(tmp, f"w{i}")
            os.makedirs(work)
            share = opts.mutants // opts.workers + (i < opts.mutants % opts.workers)
            jobs.append((i, share, opts.seed, corpus_dir, work, deadline))
        start = time.perf_counter()
        with multiprocessing.get_context("spawn").Pool(opts.workers) as pool:
            results = pool.map(worker, jobs)
        wall = time.perf_counter() - start
    total = Counter()
    by_target = Counter()
    for r in results:
        total.update(r["codes"])
        by_target.update(r["by_target"])
    tracebacks = [t for r in results for t in r["tracebacks"]]
    hangs = [h for r in results for h in r["hangs"]]
    wrong = [w for r in results for w in r["wrong"]]
    runs = sum(r["runs"] for r in results)
    print(f"fuzz: {runs} mutants in {wall:.0f} s ({runs / wall:.0f}/s) over {len(traces)} trace kinds "
          f"and the sidecar, seed {opts.seed}")
    print(f"  tracebacks {len(tracebacks)}, hangs {len(hangs)}, wrong answers {len(wrong)}")
    print(f"  exit codes {dict(sorted(total.items()))}")
    print(f"  targets {dict(by_target)}")
    print(f"  slowest run {max(r['slowest'] for r in results):.1f} s; peak RSS per worker "
          + ", ".join(f"{r['peak_rss_mb']:.0f}" for r in results) + " MiB")
    for line in (tracebacks + hangs + wrong)[:30]:
        print("   ", line)


if __name__ == "__main__":
    main()
