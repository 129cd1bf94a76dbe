"""Hostile traces: thousands of mutants of every kind of trace vmrr writes, and of its
sidecar, through ``info``, ``events --json``, ``replay --verify``, checkpoint entry and
the time-travel engine, in this process with fixed seeds (tools/tracefuzz.py).

Each run must end with exit 0, 1, 2 or 3 (a crash the replayed run reaches) and nothing
escaping (no traceback, no "internal error"), within a time limit, without a wrong answer (a mutant accepted that replays
differently from the original), and the process's memory must stay bounded.
"""

from __future__ import annotations

import os
import random
import sys
from collections import Counter
from pathlib import Path

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
import tracefuzz as tf  # noqa: E402

pytestmark = pytest.mark.timeout(300)

MAX_MEM = 256 << 20
RSS_BOUND_MB = 1024
MUTANTS_PER_KIND = 450
SIDECAR_MUTANTS = 120
LINUX_MUTANTS = 200            # a Linux trace is larger and slower to replay


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Every kind of trace vmrr writes: {kind: (path, Reference)}."""
    directory = tmp_path_factory.mktemp("corpus")
    cache = tmp_path_factory.mktemp("cache")
    saved = os.environ.get("VMRR_CACHE_DIR")
    os.environ["VMRR_CACHE_DIR"] = str(cache)
    traces = tf.build_corpus(str(directory))
    refs = {kind: (path, tf.reference(path, max_mem=MAX_MEM)) for kind, path in traces.items()}
    yield refs
    if saved is None:
        os.environ.pop("VMRR_CACHE_DIR", None)
    else:
        os.environ["VMRR_CACHE_DIR"] = saved


def judge(outcomes: list[tuple[str, str, tf.Outcome]]) -> None:
    problems = [f"{target} on a {what} mutant: exit {o.code}, escaped {o.escaped}, hang {o.hang}, "
                f"wrong {o.wrong}" for target, what, o in outcomes
                if o.escaped or o.hang or o.wrong or o.code not in (0, 1, 2, 3)]
    codes = Counter(o.code for _, _, o in outcomes)
    assert not problems, f"{len(problems)} of {len(outcomes)} runs failed (exit codes {dict(codes)}):\n" \
                         + "\n".join(problems[:20])
    assert tf.peak_rss_mb() < RSS_BOUND_MB, f"peak RSS {tf.peak_rss_mb():.0f} MiB"


def trace_targets(path: str, ref: tf.Reference):
    """(name, weight, run(mutant path) -> Outcome)."""
    mm = f"{MAX_MEM >> 20}M"
    return [
        ("info --json", 3, lambda p: tf.run_cli(["info", p, "--json"])),
        ("info", 2, lambda p: tf.run_cli(["info", p, "--recover"])),
        ("events --json", 3, lambda p: tf.run_cli(["events", p, "--json"])),
        ("replay --verify", 2, lambda p: tf.run_cli(["replay", p, "--verify", "--max-mem", mm])),
        ("verified replay", 2, lambda p: tf.run_api(tf.replay_verified(p, ref, max_mem=MAX_MEM))),
        ("checkpoint entry", 2, lambda p: tf.run_api(tf.enter_checkpoints(p, ref, max_mem=MAX_MEM))),
        ("time travel", 1, lambda p: tf.run_api(tf.time_travel(p, max_mem=MAX_MEM))),
    ]


@pytest.mark.parametrize("kind", ["poweroff", "checkpoints", "crash", "sockets", "exceptions", "killed", "linux",
                                  "linux-threads", "linux-processes"])
def test_mutated_traces_never_crash_or_fool_vmrr(corpus, tmp_path, kind):
    if kind not in corpus:
        pytest.skip("no gcc to build the Linux program")
    path, ref = corpus[kind]
    data = Path(path).read_bytes()
    decoded = tf.decode(data)
    rng = random.Random(f"fuzz-{kind}")
    targets = trace_targets(path, ref)
    names, weights = [t[0] for t in targets], [t[1] for t in targets]
    runs = dict((t[0], t[2]) for t in targets)
    mutant = tmp_path / Path(path).name                       # .incomplete stays .incomplete
    outcomes = []
    count = {"linux": LINUX_MUTANTS, "linux-threads": LINUX_MUTANTS // 2,
             "linux-processes": LINUX_MUTANTS // 2}.get(kind, MUTANTS_PER_KIND)
    for _ in range(count):
        roll = rng.random()
        if roll < 0.6:
            data_out, what = tf.structure_mutant(decoded, rng)
        else:
            fix = roll < 0.85
            data_out, what = tf.byte_mutant(data, rng, fix=fix), "bytes+crc" if fix else "bytes"
        mutant.write_bytes(data_out)
        target = rng.choices(names, weights)[0]
        outcomes.append((target, what, runs[target](str(mutant))))
    judge(outcomes)
    # The mutants reached the replayer, not only the checksums.
    assert sum(1 for _, _, o in outcomes if o.code == 0) > count // 10


def test_altered_checkpoints_are_always_detected(corpus, tmp_path):
    """Every checkpoint page or register altered (checksums valid): refused by --verify and on entry."""
    path, ref = corpus["checkpoints"]
    decoded = tf.decode(Path(path).read_bytes())
    rng = random.Random("checkpoints")
    mutant = tmp_path / "altered.vmrr"
    chunks = [i for i, c in enumerate(decoded.chunks) if c[0][1] == tf.CHECKPOINT]
    verify_codes, entry_codes = Counter(), Counter()
    for n in range(40):
        d = tf.Decoded(decoded.version, decoded.header, decoded.image, [list(c) for c in decoded.chunks],
                       decoded.firsts, decoded.footer)
        i = chunks[n % len(chunks)]
        record = [d.chunks[i][0][0], d.chunks[i][0][1], dict(d.chunks[i][0][2])]
        payload = record[2]
        if n % 2 and payload["pages"]:
            pages = [list(entry) for entry in payload["pages"]]
            entry = rng.choice(pages)
            page = bytearray(entry[1])
            page[rng.randrange(len(page))] ^= 1 << rng.randrange(8)
            entry[1] = bytes(page)
            payload["pages"] = pages
        else:
            cpu = dict(payload["cpu"])
            name = rng.choice(["rax", "rsp", "r12", "rflags"])
            cpu[name] ^= 1 << rng.randrange(8)
            payload["cpu"] = cpu
        d.chunks[i][0] = record
        mutant.write_bytes(tf.encode(d))
        verify_codes[tf.run_cli(["replay", str(mutant), "--verify", "--quiet"]).code] += 1
        entered = tf.run_api(tf.enter_checkpoints(str(mutant), ref, max_mem=MAX_MEM))
        assert entered.wrong is None and entered.escaped is None
        entry_codes[entered.code] += 1
    assert verify_codes == {1: 40}, verify_codes
    assert entry_codes == {1: 40}, entry_codes


def test_mutated_sidecars_never_crash_or_fool_time_travel(corpus, tmp_path):
    from replay import sidecar
    from replay.timetravel import TimeTravel

    path, _ = corpus["checkpoints"]
    trace = tmp_path / "timers.vmrr"
    trace.write_bytes(Path(path).read_bytes())
    original = TimeTravel(str(trace), memory_budget=64 << 20, max_mem=MAX_MEM)
    assert not original.loaded_from_sidecar
    ref = tf.Reference(str(trace), True, last_icount=original.last_icount,
                       console=original.console_output(original.last_icount))
    original.close()
    good = Path(sidecar.sidecar_path(str(trace))).read_bytes()
    reopened = TimeTravel(str(trace), memory_budget=64 << 20, max_mem=MAX_MEM)
    assert reopened.loaded_from_sidecar
    reopened.close()
    key = sidecar.sidecar_key()
    rng = random.Random("sidecar")
    outcomes, signed_accepted = [], 0
    for n in range(SIDECAR_MUTANTS):
        kind = ("bytes", "unsigned", "signed")[n % 3]
        if kind == "bytes":
            data = tf.byte_mutant(good, rng, fix=False)
            changed = data != good
        else:
            data, changed = tf.sidecar_structure_mutant(good, rng, key if kind == "signed" else None)
        Path(sidecar.sidecar_path(str(trace))).write_bytes(data)
        # Judged against the original's history unless it was re-signed with our own key
        # (then it is trusted content, and only has to be safe to use).
        holder = {}

        def action(kind=kind, changed=changed):
            tt = TimeTravel(str(trace), memory_budget=64 << 20, max_mem=MAX_MEM, sidecar=True)
            try:
                holder["loaded"] = tt.loaded_from_sidecar
                wrong = None
                if kind != "signed" and changed and tt.loaded_from_sidecar:
                    wrong = "an altered sidecar without a valid MAC was believed"
                if not tt.loaded_from_sidecar and (tt.last_icount != ref.last_icount
                                                   or tt.console_output(tt.last_icount) != ref.console):
                    wrong = "a rejected sidecar left state behind"
                tt.seek(tt.last_icount // 2)
                tt.step_back()
                tt.goto_end()
                return wrong
            finally:
                tt.close()
        outcome = tf.run_api(action)
        signed_accepted += kind == "signed" and holder.get("loaded", False)
        outcomes.append(("time travel", f"{kind} sidecar", outcome))
    judge(outcomes)
    assert all(o.code == 0 for _, _, o in outcomes)        # a bad sidecar is rebuilt, never an error
