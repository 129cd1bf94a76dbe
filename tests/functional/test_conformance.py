"""The quick part of the conformance corpus (bench/conformance.py runs all of it).

Real Debian programs over generated inputs of up to 1 MiB, run natively and under
``vmrr record`` with one fixed environment: the recorded stdout and exit status must be
the native ones byte for byte (record and replay agreeing is not enough), and the trace
must replay with ``--verify`` under both instruction counters, printing the same again.
One trace is also recorded with the reference counter and replayed with the fast one.
Time travel to seeded random positions, forward and backward, and stepping back from
them, must give the states a straight replay gives (tools/ttcheck.py).

The reference is the program run natively on the CPU the VM offers: the glibc features
vmrr's Westmere CPU model lacks (AVX, FMA, ...) are masked with GLIBC_TUNABLES, in the
native run and in the recorded one alike, so both run the same code (glibc's non-FMA libm
can differ from its FMA one in the last bit). bench/conformance.py also compares with the
unmasked native run and reports a difference that comes from the CPU model as DIFF-cpu.

A program that is not installed skips its test; ``.ci/run`` installs them all.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
import corpus  # noqa: E402
import ttcheck  # noqa: E402

pytestmark = pytest.mark.timeout(180)

PY = corpus.PY
# Smaller than the bench's versions where those read files over 1 MiB or run long.
QUICK = [
    corpus.find("sha256sum"),                       # also recorded with --counter reference
    corpus.find("sort"),
    corpus.Program("wc", ("/usr/bin/wc", "{in}/text-4K", "{in}/text-256K", "{in}/bin-1M")),
    corpus.Program("tr", ("/usr/bin/tr", "a-z", "A-Z"), stdin="{in}/text-256K"),
    corpus.Program("base64", ("/usr/bin/base64", "{in}/bin-64K")),
    corpus.Program("xz-threads", ("/usr/bin/xz", "-c", "-1", "-T2", "--block-size=64KiB", "{in}/text-256K")),
    corpus.find("xz-decompress"),
    corpus.Program("python3", (PY, "{in}/quick.py", "{in}/text-256K")),
    corpus.Program("sqlite3-floats", ("/usr/bin/sqlite3", ":memory:"), stdin="{in}/queries-small.sql"),
    corpus.Program("perl", ("/usr/bin/perl", "{in}/arith-small.pl")),
]
# sha256sum's trace from the test above; py-epoll-threads (epoll_ctl all along, a thread)
# is recorded by the time-travel test itself.
TIME_TRAVEL = [corpus.find("sha256sum"), corpus.find("py-epoll-threads")]
CROSS = {"sha256sum"}
_traces: dict[str, Path] = {}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    work = tmp_path_factory.mktemp("conformance")
    corpus.reset_inherited_signals()
    inputs = corpus.make_inputs(work / "inputs", small=True)
    return corpus.Runner(work, [sys.executable, str(REPO / "vmrr.py")], cpu_matched=True), inputs


def _describe(result: corpus.ProgramResult, prog: corpus.Program, inputs: Path) -> str:
    lines = [f"$ {' '.join(prog.command(inputs))}" + (f" < {prog.stdin_path(inputs)}" if prog.stdin else "")]
    for mode, step in result.steps.items():
        lines.append(f"  {mode}: {step.status} {step.detail}")
        if step.status not in ("ok", "-", "skip") and step.stderr:
            lines.append("    " + "\n    ".join(step.stderr.strip().splitlines()[-6:]))
    return "\n".join(lines)


@pytest.mark.parametrize("prog", QUICK, ids=[p.name for p in QUICK])
def test_output_is_native_and_replays_exactly_with_both_counters(setup, prog):
    runner, inputs = setup
    if not Path(prog.executable).is_file():
        pytest.skip(f"{prog.executable} is not installed")
    options = corpus.CheckOptions(run=False, counters=("fast", "reference"), cross=prog.name in CROSS,
                                  time_travel=False, retry=False, keep_traces=True)
    prog = corpus.Program(**{**prog.__dict__, "cross": prog.name in CROSS})
    result = corpus.check_program(prog, runner, inputs, options)
    trace = runner.work / "traces" / f"{prog.name}.vmrr"
    if trace.is_file():
        _traces[prog.name] = trace
    if result.failures():
        pytest.fail(_describe(result, prog, inputs), pytrace=False)
    assert {"record", "replay-fast", "replay-reference"} <= result.steps.keys()


@pytest.mark.parametrize("prog", TIME_TRAVEL, ids=[p.name for p in TIME_TRAVEL])
def test_time_travel_at_random_positions_matches_a_straight_replay(setup, prog):
    runner, inputs = setup
    if not Path(prog.executable).is_file():
        pytest.skip(f"{prog.executable} is not installed")
    trace = _traces.get(prog.name)
    if trace is None:                       # not recorded above (or -k chose this test alone)
        trace = runner.work / "traces" / f"{prog.name}.tt.vmrr"
        trace.parent.mkdir(parents=True, exist_ok=True)
        argv, stdin = prog.command(inputs), prog.stdin_path(inputs)
        record = runner.vmrr_cmd("record", "-o", str(trace), *runner.program_options(), "--", *argv,
                                 stdin=stdin, timeout=120)
        assert trace.is_file(), record.stderr
        native = runner.native(argv, stdin=stdin)
        assert record.stdout == native.stdout, corpus.first_difference(native.stdout, record.stdout)
    report = ttcheck.check_time_travel(trace, seed=corpus.DEFAULT_SEED, positions=4, step_backs=2)
    assert report.ok, f"{report.summary()}\nmoves: {report.moves}\n" + "\n".join(report.mismatches)
    assert len(report.positions) >= 7 and report.positions[-1] <= report.last_icount


def test_first_difference_names_the_byte_and_the_line():
    detail = corpus.first_difference(b"ab\ncd\nef", b"ab\ncX\nef")
    assert "byte 4" in detail and "line 2" in detail and "b'ab\\ncd\\nef'" in detail, detail
    assert corpus.first_difference(b"same", b"same") == ""
    assert "lengths 3 vs 5" in corpus.first_difference(b"abc", b"abcde")


def test_time_travel_plan_jumps_backward_and_covers_both_ends():
    plan = ttcheck.plan_positions(10_000_000, seed=3, count=6)
    assert len(plan) == 6 and all(0 <= p <= 10_000_000 for p in plan)
    assert any(b < a for a, b in zip(plan, plan[1:])), plan
    assert min(plan) <= 100_000 and max(plan) >= 9_900_000, plan
    assert ttcheck.plan_positions(10_000_000, seed=3, count=6) == plan
