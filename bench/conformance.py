"""The conformance corpus: real Debian programs natively and under vmrr, byte for byte.

    python bench/conformance.py [--quick] [--only NAME[,NAME...]] [--cpython [MODULE ...]]
                                [--no-cpython] [--no-programs] [--jobs N] [--json FILE] ...

For every program of the corpus (tools/corpus.py): run it natively, under ``vmrr run``
and under ``vmrr record``, replay the trace with ``--verify`` under both instruction
counters, record some again with the reference counter and replay them with the fast
one, and check time travel at seeded random positions against a straight replay
(tools/ttcheck.py). A deterministic program's stdout and exit status must be the native
ones byte for byte; a nondeterministic one's replays must print what its recording
printed. A failed step is run once more to tell whether it reproduces.

Then CPython's own regression suite (Debian's libpython3.11-testsuite): each module runs
natively and under ``vmrr record`` as ``python3 -m test -v MODULE`` in one process, and
the outcomes are compared test case by test case (tools/unittest_log.py): the table says
whether a module behaves as natively, or e.g. fails only in tests that need fork. Its
trace is replayed and checked like any other.

``--quick`` runs the programs marked quick (about 15 minutes on 2 cores) and no CPython modules. The
table goes to stdout (progress to stderr); ``--json FILE`` keeps every detail (and
FILE.partial.jsonl gets each result as it comes).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import corpus  # noqa: E402

PROGRAM_MODES = ("native", "run", "record", "replay-fast", "replay-reference", "cross", "timetravel")
MODULE_MODES = ("native", "record", "replay-fast", "replay-reference", "timetravel")
_SHORT = {"native": "native", "run": "run", "record": "record", "replay-fast": "rp-fast",
          "replay-reference": "rp-ref", "cross": "ref>fast", "timetravel": "tt"}
_print_lock = threading.Lock()


def _log(message: str) -> None:
    with _print_lock:
        print(message, file=sys.stderr, flush=True)


def _cell(result, mode: str) -> str:
    step = result.steps.get(mode)
    return "" if step is None else step.status


def _seconds(result, mode: str) -> str:
    step = result.steps.get(mode)
    if step is None or step.status in ("-", "skip"):
        return ""
    return f"{step.seconds:.1f}"


def _count(n: int | None) -> str:
    if n is None:
        return ""
    for unit, size in (("G", 10 ** 9), ("M", 10 ** 6), ("k", 10 ** 3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def program_table(results: list[corpus.ProgramResult]) -> str:
    head = ["program", "kind", *(_SHORT[m] for m in PROGRAM_MODES), "instr",
            "seconds native/run/rec/rp-fast/rp-ref/ref>fast/tt"]
    rows = [head]
    for res in results:
        kind = "det" if res.deterministic else "nondet"
        rows.append([res.name, kind, *(_cell(res, m) for m in PROGRAM_MODES), _count(res.instructions),
                     "/".join(_seconds(res, m) for m in PROGRAM_MODES)])
    return _format(rows)


def module_table(results: list[corpus.ModuleResult]) -> str:
    head = ["module", "native", *(_SHORT[m] for m in MODULE_MODES[1:]), "instr",
            "seconds native/rec/rp-fast/rp-ref/tt", "vmrr compared with native"]
    rows = [head]
    for res in results:
        native = res.steps.get("native")
        native_cell = native.status if native else ""
        if native and native.status == "FAIL" and res.native_failed:
            native_cell = f"FAIL({len(res.native_failed)})"
        rows.append([res.name, native_cell, *(_cell(res, m) for m in MODULE_MODES[1:]), _count(res.instructions),
                     "/".join(_seconds(res, m) for m in MODULE_MODES), res.verdict or (native.detail if native else "")])
    return _format(rows)


def _format(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
        if n == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * len(row[-1]))
    return "\n".join(line.rstrip() for line in lines)


def failure_report(programs: list[corpus.ProgramResult], modules: list[corpus.ModuleResult],
                   argv_of: dict[str, str]) -> str:
    out = []
    for res in programs:
        fails = res.failures()
        if not fails and not res.notes:
            continue
        out.append(f"{res.name}: {argv_of.get(res.name, '')}")
        for mode, step in fails:
            out.append(f"    {mode}: {step.status}: {step.detail}")
        for note in res.notes:
            out.append(f"    note: {note}")
    for res in modules:
        fails = res.failures()
        if not fails and not res.notes and not res.only_vmrr_failed:
            continue
        out.append(f"{res.name}: python3 -m test -v {res.name}")
        for mode, step in fails:
            if mode == "record" and step.status == "DIFF":
                continue
            out.append(f"    {mode}: {step.status}: {step.detail}")
        need = set(res.only_vmrr_failed_need_processes)
        shown = sorted(res.only_vmrr_failed, key=lambda tid: (tid in need, tid))
        for tid in shown[:25]:
            tag = " [fork/subprocess]" if tid in need else ""
            out.append(f"    vmrr only: {tid}{tag}: {res.only_vmrr_failed[tid]}")
        if len(shown) > 25:
            out.append(f"    ... {len(shown) - 25} more (see --json)")
        if res.missing:
            out.append(f"    never reported under vmrr: {len(res.missing)} tests, first {res.missing[0]}")
        for note in res.notes:
            out.append(f"    note: {note}")
    return "\n".join(out)


def _jsonable(result) -> dict:
    data = asdict(result)
    for step in data.get("steps", {}).values():
        step.pop("stdout", None)
        step["stderr"] = step["stderr"][-2000:]
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="only the programs marked quick; no CPython modules")
    parser.add_argument("--only", action="append", default=[],
                        help="only these programs or CPython modules (comma-separated, repeatable)")
    parser.add_argument("--cpython", nargs="*", metavar="MODULE",
                        help="CPython test modules to run (default with no names: the whole list)")
    parser.add_argument("--no-cpython", action="store_true", help="skip CPython's test suite")
    parser.add_argument("--no-programs", action="store_true", help="only CPython's test suite")
    parser.add_argument("--jobs", type=int, default=1, help="programs checked at once (default 1)")
    parser.add_argument("--counters", default="fast,reference", help="replay --verify with each (default both)")
    parser.add_argument("--no-run", action="store_true", help="skip `vmrr run`")
    parser.add_argument("--no-tt", action="store_true", help="skip the time-travel check")
    parser.add_argument("--no-cpython-tt", action="store_true", help="skip the time-travel check on CPython traces")
    parser.add_argument("--cpython-tt-limit", type=float, default=1.5e9,
                        help="check time travel on a CPython module's trace only if it has at most this many "
                             "instructions (default 1.5e9; the check costs about four replays; -1: always)")
    parser.add_argument("--tt-positions", type=int, default=6)
    parser.add_argument("--no-retry", action="store_true", help="do not rerun failed steps")
    parser.add_argument("--seed", type=int, default=corpus.DEFAULT_SEED, help="inputs and time-travel positions")
    parser.add_argument("--cpython-timeout", type=float, default=3600, help="seconds per vmrr step of a module")
    parser.add_argument("--cpython-resources", help="regrtest -u resources (default: none)")
    parser.add_argument("--json", type=Path, help="write every result (details included) to this file")
    parser.add_argument("--keep", type=Path, help="work here (inputs, traces kept) instead of a temporary dir")
    args = parser.parse_args(argv)

    corpus.reset_inherited_signals()
    only = {name for item in args.only for name in item.split(",") if name}
    programs = [] if args.no_programs else [p for p in corpus.PROGRAMS if (not args.quick or p.quick)
                                             and (not only or p.name in only)]
    if args.no_cpython or (args.quick and args.cpython is None):
        modules = []
    else:
        wanted = set(args.cpython or []) | only if args.cpython or only else None
        modules = [(m, extra) for m, extra in corpus.CPYTHON_MODULES if wanted is None or m in wanted]
        known = {m for m, _ in corpus.CPYTHON_MODULES}
        modules += [(m, ()) for m in sorted((wanted or set()) - known) if m.startswith("test_")]
    if only:
        unknown = only - {p.name for p in corpus.PROGRAMS} - {m for m, _ in modules}
        if unknown:
            parser.error(f"unknown program or module: {', '.join(sorted(unknown))}")

    work = args.keep or Path(tempfile.mkdtemp(prefix="vmrr-conformance-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    inputs = corpus.make_inputs(work / "inputs", seed=args.seed)
    runner = corpus.Runner(work)
    options = corpus.CheckOptions(run=not args.no_run, counters=tuple(c for c in args.counters.split(",") if c),
                                  time_travel=not args.no_tt, tt_positions=args.tt_positions, seed=args.seed,
                                  retry=not args.no_retry, keep_traces=args.keep is not None)
    module_options = corpus.CheckOptions(**{**asdict(options), "time_travel": options.time_travel
                                            and not args.no_cpython_tt, "tt_positions": 4, "tt_step_backs": 2})
    _log(f"conformance: {len(programs)} programs, {len(modules)} CPython modules, work dir {work}")

    progress = args.json.with_suffix(".partial.jsonl") if args.json else None
    if progress:
        progress.write_text("")

    def done(kind: str, res, started_at: float) -> None:
        bad = ", ".join(f"{m} {s.status}" for m, s in res.failures())
        verdict = f" {res.verdict}" if kind == "module" and res.verdict else ""
        _log(f"  {res.name}: {'ok' if not bad else bad}{verdict} ({time.perf_counter() - started_at:.0f} s)")
        if progress:
            with _print_lock, progress.open("a") as out:
                out.write(json.dumps({"kind": kind, **_jsonable(res)}) + "\n")

    def check(prog: corpus.Program) -> corpus.ProgramResult:
        t0 = time.perf_counter()
        try:
            res = corpus.check_program(prog, runner, inputs, options)
        except Exception as exc:  # noqa: BLE001 - a harness error is one row, not the end of the run
            res = corpus.ProgramResult(prog.name, prog.deterministic)
            res.steps["native"] = corpus.Step("FAIL", detail=f"harness error: {type(exc).__name__}: {exc}")
        done("program", res, t0)
        return res

    def check_module(item) -> corpus.ModuleResult:
        module, extra = item
        t0 = time.perf_counter()
        try:
            res = corpus.check_cpython_module(module, extra, runner, module_options,
                                              timeout=args.cpython_timeout, resources=args.cpython_resources,
                                              tt_limit=None if args.cpython_tt_limit < 0 else int(args.cpython_tt_limit))
        except Exception as exc:  # noqa: BLE001
            res = corpus.ModuleResult(module)
            res.steps["native"] = corpus.Step("FAIL", detail=f"harness error: {type(exc).__name__}: {exc}")
        done("module", res, t0)
        return res

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        program_results = list(pool.map(check, programs))
        programs_seconds = time.perf_counter() - started
        module_results = list(pool.map(check_module, modules))
    total = time.perf_counter() - started

    argv_of = {p.name: " ".join(p.command(inputs)) + (f" < {p.stdin_path(inputs)}" if p.stdin else "")
               + (f"  [record {' '.join(p.record_options)}]" if p.record_options else "") for p in programs}
    print(f"vmrr conformance corpus (seed {args.seed}; inputs in {inputs})")
    print(f"environment: {' '.join(f'{k}={v}' for k, v in corpus.FIXED_ENV.items())} HOME TMPDIR")
    if program_results:
        print()
        print(program_table(program_results))
    if module_results:
        print()
        print(module_table(module_results))
    report = failure_report(program_results, module_results, argv_of)
    if report:
        print("\nDetails (a failed step was run again: [reproduces] or not)\n")
        print(report)
    failed_programs = sum(1 for r in program_results if r.failures())
    failed_modules = sum(1 for r in module_results if r.failures())
    print(f"\n{len(program_results) - failed_programs}/{len(program_results)} programs passed every step; "
          f"{len(module_results) - failed_modules}/{len(module_results)} CPython modules behaved as natively "
          f"and replayed exactly; programs {programs_seconds:.0f} s, total {total:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"seed": args.seed, "seconds": round(total, 1),
                                         "programs": [_jsonable(r) for r in program_results],
                                         "modules": [_jsonable(r) for r in module_results]}, indent=1))
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if not failed_programs and not failed_modules else 1


if __name__ == "__main__":
    sys.exit(main())
