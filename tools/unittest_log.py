"""Read CPython's ``python -m test -v`` output per test case, and compare two runs of it.

``parse(text)`` turns the verbose log into {test id: Case(outcome, error)}: every
"name (test.module.Class.name) ... ok|FAIL|ERROR|skipped '...'|expected failure|
unexpected success" line (a test that prints puts its verdict on a later line), every
"Doctest: name ... ok" line, and the FAIL/ERROR sections after the run, whose traceback
becomes the case's error (setUpClass and module-level errors appear only there).

``compare(native, vmrr)`` classifies the cases whose outcome differs, and says in one
line what a module's run under vmrr did compared with its native run, e.g. "fails only in
2 tests that need fork/subprocess (ENOSYS)".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

OUTCOMES = ("ok", "FAIL", "ERROR", "skipped", "expected failure", "unexpected success")
_HEADER = re.compile(r"^(?:(?P<name>\w+) \((?P<id>[\w.]+)\)|Doctest: (?P<doc>[\w.]+))"
                     r"(?P<rest>(?:\n(?![\w.]+ \()[^\n]*?)?) \.\.\. ?", re.M)
_VERDICT = re.compile(r"^(ok|FAIL|ERROR|skipped(?: .*)?|expected failure|unexpected success)$", re.M)
_SECTION = re.compile(r"^={50,}\n(?P<kind>FAIL|ERROR|UNEXPECTED SUCCESS): (?P<what>[^\n]+)\n-{50,}\n"
                      r"(?P<body>.*?)(?=^={50,}\n|^-{50,}\nRan |\Z)", re.M | re.S)
_SECTION_ID = re.compile(r"^(?P<name>\w+) \((?P<id>[\w.]+)\)")
_DOCTEST_LINE = re.compile(r"\nDoctest: ([\w.]+)$")
_DOCTEST_SUMMARY = re.compile(r"^\d+ tests? with (zero|\d+) failures")
_RAN = re.compile(r"^Ran (\d+) tests? in", re.M)
_RESULT = re.compile(r"^== Tests result: (.*?) ==$", re.M)

# A test that failed for one of these reasons needs something vmrr does not offer yet.
NEEDS_PROCESSES = re.compile(
    r"\[Errno 38\]|Function not implemented|_posixsubprocess|fork_exec|os\.fork|\bfork\(|"
    r"subprocess\.py|script_helper|assert_python_(?:ok|failure)|spawn_python|multiprocessing|"
    r"os\.system|os\.popen|os\.wait|ChildProcessError|No child processes|\[Errno 10\]")


@dataclass
class Case:
    outcome: str                 # ok, FAIL, ERROR, skipped, expected failure, unexpected success
    detail: str = ""             # the skip reason, or the last line of the traceback
    traceback: str = ""

    @property
    def passed(self) -> bool:
        return self.outcome in ("ok", "skipped", "expected failure")


@dataclass
class Log:
    cases: dict[str, Case] = field(default_factory=dict)
    ran: int | None = None          # unittest's "Ran N tests"
    result: str | None = None       # regrtest's "== Tests result: X =="

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for case in self.cases.values():
            out[case.outcome] = out.get(case.outcome, 0) + 1
        return out

    def failing(self) -> list[str]:
        return sorted(tid for tid, case in self.cases.items() if not case.passed)


def parse(text: str) -> Log:
    """Every test case of a ``-v`` log, with its outcome and, for failures, its error."""
    log = Log()
    headers = list(_HEADER.finditer(text))
    seen: dict[str, int] = {}
    for i, match in enumerate(headers):
        tid = match.group("id") or f"doctest:{match.group('doc')}"
        doc = _DOCTEST_LINE.match(match.group("rest"))
        if doc:                               # "Counter (collections)\nDoctest: collections.Counter"
            tid = f"doctest:{doc.group(1)}"
        if tid in seen:                       # the same doctest run twice (C and Python modules)
            seen[tid] += 1
            tid = f"{tid}#{seen[tid]}"
        else:
            seen[tid] = 1
        end = headers[i + 1].start() if i + 1 < len(headers) else len(text)
        after = text[match.end():end]
        first_line = after.split("\n", 1)[0].strip()
        if _DOCTEST_SUMMARY.match(first_line):
            continue                          # test_decimal's own doctest runner: not a case
        verdict = first_line if _VERDICT.match(first_line) else None
        if verdict is None:
            found = _VERDICT.search(after)
            verdict = found.group(1) if found else None
        if verdict is None:
            continue                          # the run stopped inside this test
        if verdict.startswith("skipped"):
            log.cases[tid] = Case("skipped", verdict[len("skipped"):].strip().strip("'\""))
        else:
            log.cases[tid] = Case(verdict)
    for section in _SECTION.finditer(text):
        kind, what, body = section.group("kind"), section.group("what"), section.group("body")
        ident = _SECTION_ID.match(what)
        tid = ident.group("id") if ident else what.strip()
        if ident and ident.group("name") in ("setUpClass", "tearDownClass", "setUpModule", "tearDownModule"):
            tid = f"{ident.group('id')}.{ident.group('name')}"
        lines = [line for line in body.strip().splitlines() if line.strip()]
        detail = lines[-1].strip() if lines else ""
        outcome = "unexpected success" if kind == "UNEXPECTED SUCCESS" else kind
        case = log.cases.get(tid)
        if case is None or case.passed or case.outcome == outcome:
            log.cases[tid] = Case(outcome, detail, body.strip())
        elif not case.traceback:             # a subtest failed: keep the first traceback
            case.detail, case.traceback = detail, body.strip()
    ran = _RAN.search(text)
    log.ran = int(ran.group(1)) if ran else None
    results = _RESULT.findall(text)
    log.result = results[-1] if results else None
    return log


@dataclass
class Comparison:
    """How vmrr's run of a module differs from the native one, case by case."""

    only_vmrr_failed: dict[str, Case] = field(default_factory=dict)
    only_native_failed: dict[str, Case] = field(default_factory=dict)
    both_failed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)            # ran natively, never reported under vmrr
    extra: list[str] = field(default_factory=list)              # reported under vmrr only
    skipped_differently: dict[str, tuple[str, str]] = field(default_factory=dict)   # id: (native, vmrr)

    @property
    def same(self) -> bool:
        return not (self.only_vmrr_failed or self.missing or self.extra or self.only_native_failed)

    def need_processes(self) -> list[str]:
        return [tid for tid, case in self.only_vmrr_failed.items() if NEEDS_PROCESSES.search(case.traceback
                                                                                             or case.detail)]


def compare(native: Log, vmrr: Log) -> Comparison:
    cmp = Comparison()
    for tid, case in native.cases.items():
        other = vmrr.cases.get(tid)
        if other is None:
            cmp.missing.append(tid)
        elif case.passed and not other.passed:
            cmp.only_vmrr_failed[tid] = other
        elif not case.passed and other.passed:
            cmp.only_native_failed[tid] = case
        elif not case.passed:
            cmp.both_failed.append(tid)
        elif (case.outcome == "skipped") != (other.outcome == "skipped"):
            cmp.skipped_differently[tid] = (case.outcome, f"{other.outcome} {other.detail}".strip())
    for tid, case in vmrr.cases.items():
        if tid not in native.cases:
            cmp.extra.append(tid)
            if not case.passed:
                cmp.only_vmrr_failed[tid] = case
    return cmp


def summarize(native: Log, vmrr: Log, cmp: Comparison) -> str:
    """One line for the table's verdict column."""
    counts = vmrr.counts()
    tally = ", ".join(f"{n} {k}" for k, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    parts = []
    if cmp.only_vmrr_failed:
        processes = cmp.need_processes()
        n = len(cmp.only_vmrr_failed)
        if processes and len(processes) == n:
            parts.append(f"fails only in {n} test{'s' * (n != 1)} that need{'s' * (n == 1)} fork/subprocess (ENOSYS)")
        elif processes:
            parts.append(f"{n} tests fail only under vmrr ({len(processes)} need fork/subprocess, "
                         f"{n - len(processes)} do not)")
        else:
            parts.append(f"{n} test{'s' * (n != 1)} fail only under vmrr")
    if cmp.missing:
        parts.append(f"{len(cmp.missing)} tests never reported under vmrr")
    if cmp.only_native_failed:
        parts.append(f"{len(cmp.only_native_failed)} tests fail natively but pass under vmrr")
    if cmp.both_failed:
        parts.append(f"{len(cmp.both_failed)} fail natively too")
    if cmp.skipped_differently:
        parts.append(f"{len(cmp.skipped_differently)} skipped differently")
    if not parts:
        parts.append("same as native")
    return f"{'; '.join(parts)} ({tally})"
