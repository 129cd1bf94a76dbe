"""tools/unittest_log.py: CPython's ``-v`` test log, case by case, and a native/vmrr comparison."""

from __future__ import annotations

import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
import unittest_log as ul  # noqa: E402

NATIVE = """\
0:00:00 load avg: 0.92 [1/1] test_demo
test_add (test.test_demo.Math.test_add) ... ok
test_div (test.test_demo.Math.test_div)
Division rounds to nearest. ... ok
test_fork (test.test_demo.Proc.test_fork) ... ok
test_spawn (test.test_demo.Proc.test_spawn) ... ok
test_prints (test.test_demo.Noisy.test_prints) ... with 1 MiB thread stack size...
waiting for tasks to complete...
ok
test_windows (test.test_demo.Win.test_windows) ... skipped 'Windows specific test'
test_broken (test.test_demo.Math.test_broken) ... FAIL
Counter (collections)
Doctest: collections.Counter ... ok
doctest (decimal) ... 9 tests with zero failures

======================================================================
FAIL: test_broken (test.test_demo.Math.test_broken)
----------------------------------------------------------------------
Traceback (most recent call last):
  File "/usr/lib/python3.11/test/test_demo.py", line 9, in test_broken
    self.assertEqual(1, 2)
AssertionError: 1 != 2

----------------------------------------------------------------------
Ran 8 tests in 0.010s

FAILED (failures=1, skipped=1)
== Tests result: FAILURE ==
"""

VMRR = """\
test_add (test.test_demo.Math.test_add) ... ok
test_div (test.test_demo.Math.test_div)
Division rounds to nearest. ... ok
test_fork (test.test_demo.Proc.test_fork) ... ERROR
test_spawn (test.test_demo.Proc.test_spawn) ... ERROR
test_prints (test.test_demo.Noisy.test_prints) ... ok
test_windows (test.test_demo.Win.test_windows) ... skipped 'Windows specific test'
test_broken (test.test_demo.Math.test_broken) ... FAIL
Counter (collections)
Doctest: collections.Counter ... ok

======================================================================
ERROR: test_fork (test.test_demo.Proc.test_fork)
----------------------------------------------------------------------
Traceback (most recent call last):
  File "/usr/lib/python3.11/test/test_demo.py", line 20, in test_fork
    pid = os.fork()
OSError: [Errno 38] Function not implemented

======================================================================
ERROR: test_spawn (test.test_demo.Proc.test_spawn)
----------------------------------------------------------------------
Traceback (most recent call last):
  File "/usr/lib/python3.11/subprocess.py", line 1901, in _execute_child
    self.pid = _fork_exec(
OSError: [Errno 38] Function not implemented

======================================================================
ERROR: setUpClass (test.test_demo.Later)
----------------------------------------------------------------------
Traceback (most recent call last):
ValueError: bad state

======================================================================
FAIL: test_broken (test.test_demo.Math.test_broken)
----------------------------------------------------------------------
AssertionError: 1 != 2

----------------------------------------------------------------------
Ran 7 tests in 0.010s

FAILED (failures=1, errors=3, skipped=1)
== Tests result: FAILURE ==
"""


def test_every_case_with_its_outcome():
    log = ul.parse(NATIVE)
    assert log.ran == 8 and log.result == "FAILURE"
    assert {tid: case.outcome for tid, case in log.cases.items()} == {
        "test.test_demo.Math.test_add": "ok",
        "test.test_demo.Math.test_div": "ok",
        "test.test_demo.Proc.test_fork": "ok",
        "test.test_demo.Proc.test_spawn": "ok",
        "test.test_demo.Noisy.test_prints": "ok",
        "test.test_demo.Win.test_windows": "skipped",
        "test.test_demo.Math.test_broken": "FAIL",
        "doctest:collections.Counter": "ok",
    }
    assert log.cases["test.test_demo.Win.test_windows"].detail == "Windows specific test"
    assert log.cases["test.test_demo.Math.test_broken"].detail == "AssertionError: 1 != 2"
    assert log.failing() == ["test.test_demo.Math.test_broken"]


def test_errors_only_in_sections_are_cases_too():
    log = ul.parse(VMRR)
    assert log.cases["test.test_demo.Later.setUpClass"].outcome == "ERROR"
    assert log.cases["test.test_demo.Proc.test_fork"].detail == "OSError: [Errno 38] Function not implemented"


def test_comparison_names_the_tests_that_fail_only_under_vmrr_and_why():
    native, vmrr = ul.parse(NATIVE), ul.parse(VMRR)
    cmp = ul.compare(native, vmrr)
    assert set(cmp.only_vmrr_failed) == {"test.test_demo.Proc.test_fork", "test.test_demo.Proc.test_spawn",
                                         "test.test_demo.Later.setUpClass"}
    assert sorted(cmp.need_processes()) == ["test.test_demo.Proc.test_fork", "test.test_demo.Proc.test_spawn"]
    assert cmp.both_failed == ["test.test_demo.Math.test_broken"] and not cmp.missing
    line = ul.summarize(native, vmrr, cmp)
    assert "3 tests fail only under vmrr (2 need fork/subprocess, 1 do not)" in line and "1 fail natively" in line


def test_a_run_that_fails_only_where_it_forks_says_so():
    native = ul.parse(NATIVE)
    vmrr = ul.parse(VMRR.replace("ERROR: setUpClass (test.test_demo.Later)", "ERROR: gone"))
    del vmrr.cases["gone"]
    line = ul.summarize(native, vmrr, ul.compare(native, vmrr))
    assert line.startswith("fails only in 2 tests that need fork/subprocess (ENOSYS)"), line


def test_same_as_native():
    log = ul.parse(NATIVE)
    assert ul.compare(log, ul.parse(NATIVE)).same
    assert ul.summarize(log, log, ul.compare(log, log)).startswith("1 fail natively too")
