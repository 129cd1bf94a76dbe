"""Process trees: programs that fork, exec, wait, pipe and signal, recorded and replayed.

Each program's output is deterministic, so what it prints under ``vmrr record`` must be
what it prints natively, byte for byte; each trace then replays ``--verify`` and prints
the same again. The programs are ours (tests/data/linux/forks.c: copy-on-write, shared
descriptions, vfork+exec, a crashing child, process groups, MAP_SHARED, signal masks,
credentials) and real ones (bash with pipelines, command and process substitution,
background jobs and traps; python3's subprocess, os.fork and a multiprocessing pool).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import describe, replay_verify, vmrr
from linux_helpers import SOURCES, linux_prog, record_linux  # noqa: F401  (fixture)

PY = "/usr/bin/python3"


def native(argv, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, timeout=60,
                          env={**os.environ, **(env or {})})


def record_like_native(tmp_path: Path, name: str, argv, *options, env=None, timeout: float = 60):
    """Record ARGV; its stdout and exit status must be the native run's."""
    expected = native(argv, env)
    trace = tmp_path / f"{name}.vmrr"
    env_options = [x for key, value in (env or {}).items() for x in ("--env", f"{key}={value}")]
    record = record_linux(trace, [str(a) for a in argv], *env_options, *options, timeout=timeout)
    assert record.stdout == expected.stdout.decode(errors="surrogateescape"), (
        "recorded output differs from the native run's\n--- native ---\n"
        + expected.stdout.decode(errors="replace") + describe(record))
    assert (record.returncode != 0) == (expected.returncode != 0), describe(record)
    return record, trace


def test_fork_exec_wait_signals_and_shared_memory_are_native(tmp_path, linux_prog):
    program = linux_prog("forks")
    record, trace = record_like_native(tmp_path, "forks", [program], env={"EXPECT_UID": str(os.getuid())})
    assert "PASS forks" in record.stdout and "MAP_SHARED: 2 3, MAP_PRIVATE: 0" in record.stdout
    assert re.search(r"process \d+ \(\S*forks\S*\) crashed: SIGSEGV", record.stderr), describe(record)
    replay = replay_verify(trace)
    assert replay.stdout == record.stdout, describe(replay)
    reference = vmrr("replay", trace, "--verify", "--counter", "reference", timeout=60)
    assert reference.returncode == 0 and reference.stdout == record.stdout, describe(reference)


def test_a_bash_script_with_pipelines_jobs_and_traps_is_native(tmp_path):
    script = SOURCES / "pipes.sh"
    record, trace = record_like_native(tmp_path, "pipes", [script], timeout=90)   # a #! script as the program
    assert "chars: 792" in record.stdout and "trapped USR1" in record.stdout, describe(record)
    assert record.returncode == 1                                                    # it exits 4
    replay = replay_verify(trace, timeout=90)
    assert replay.stdout == record.stdout


@pytest.fixture(scope="module")
def python_processes(tmp_path_factory):
    if not Path(PY).is_file():
        pytest.skip("needs Debian's python3")
    where = tmp_path_factory.mktemp("subprocs")
    return record_like_native(where, "subprocs", [PY, SOURCES / "subprocs.py"],
                              env={"PYTHONDONTWRITEBYTECODE": "1"}, timeout=120)


def test_python_subprocess_fork_and_a_pool_record_as_native(python_processes):
    record, _trace = python_processes
    assert "pool: 20540" in record.stdout and "shell: PIPED 3" in record.stdout, describe(record)


def test_python_subprocess_fork_and_a_pool_replay(python_processes):
    record, trace = python_processes
    replay = replay_verify(trace, timeout=120)
    assert replay.stdout == record.stdout


@pytest.mark.parametrize("seed", [1, 2])
def test_a_racing_pipeline_under_chaos_replays_exactly(tmp_path, seed):
    """Who writes first into the shared pipe depends on the schedule: replay must make the same one."""
    line = "for i in 1 2 3 4 5 6; do echo a$i; done & for i in 1 2 3 4 5 6; do echo b$i; done & wait"
    trace = tmp_path / f"chaos{seed}.vmrr"
    record = record_linux(trace, ["/bin/sh", "-c", line], "--chaos", str(seed), timeout=60)
    assert record.returncode == 0, describe(record)
    assert sorted(record.stdout.split()) == sorted([f"a{i}" for i in range(1, 7)] + [f"b{i}" for i in range(1, 7)])
    replay = replay_verify(trace)
    assert replay.stdout == record.stdout


def test_pids_are_the_hosts_and_replay_gives_the_same(tmp_path):
    """The first process has vmrr's own pid (unique on the host while it records), its
    children ids the host does not use; two recordings do not share them; replay repeats them."""
    outputs = []
    for n in range(2):
        trace = tmp_path / f"pids{n}.vmrr"
        proc = subprocess.Popen([*vmrr_command(), "record", "-o", str(trace), "--", "/bin/sh", "-c",
                                 'echo "$$ $PPID"; /bin/sh -c \'echo "$$ $PPID"\''],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        first, child = [tuple(map(int, row.split())) for row in out.split("\n")[:2]]
        assert first[0] == proc.pid and first[1] == os.getpid(), (first, proc.pid)
        assert child[1] == first[0] and child[0] != first[0]
        replay = replay_verify(trace)
        assert replay.stdout == out
        outputs.append(out)
    assert outputs[0] != outputs[1]


def vmrr_command() -> list[str]:
    from conftest import REPO
    import sys
    return [sys.executable, str(REPO / "vmrr.py")]


def test_a_child_crash_is_reported_and_replayed_at_the_same_icount(tmp_path):
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc")
    source = tmp_path / "crashkid.c"
    source.write_text('#include <stdio.h>\n#include <unistd.h>\n#include <sys/wait.h>\n'
                      'int main(void){ if (fork() == 0) { *(volatile int *)8 = 1; } int s; wait(&s);'
                      ' printf("child signal %d\\n", s & 0x7f); return 0; }\n')
    program = tmp_path / "crashkid"
    subprocess.run(["gcc", "-O1", "-o", str(program), str(source)], check=True, timeout=60)
    record, trace = record_like_native(tmp_path, "crashkid", [program])
    crashed = re.findall(r"process (\d+) \(\S+\) crashed: SIGSEGV at rip=(0x[0-9a-f]+) icount=(\d+)", record.stderr)
    assert len(crashed) == 1, describe(record)
    replay = vmrr("replay", trace, "--verify", timeout=60)
    assert replay.returncode == 0, describe(replay)
    again = re.findall(r"process (\d+) \(\S+\) crashed: SIGSEGV at rip=(0x[0-9a-f]+) icount=(\d+)", replay.stderr)
    assert again == crashed, describe(replay)


def test_a_deadlock_across_processes_is_reported_not_a_hang(tmp_path):
    """A parent and its child each read a pipe only the other would write: the run ends
    with a report naming both waits, and the replay ends the same way."""
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc")
    source = tmp_path / "deadlock.c"
    source.write_text('#include <stdio.h>\n#include <unistd.h>\n'
                      'int main(void){ int a[2], b[2]; char c; pipe(a); pipe(b);'
                      ' if (fork() == 0) { read(a[0], &c, 1); return 0; }'
                      ' read(b[0], &c, 1); puts("never"); return 0; }\n')
    program = tmp_path / "deadlock"
    subprocess.run(["gcc", "-O1", "-o", str(program), str(source)], check=True, timeout=60)
    trace = tmp_path / "deadlock.vmrr"
    record = record_linux(trace, [str(program)], timeout=60)
    assert record.returncode == 3, describe(record)
    assert re.search(r"deadlock .*every thread waits and none can be woken: thread \d+ \(deadlock\) waits in "
                     r"read; thread \d+ \(deadlock\) waits in read", record.stderr), describe(record)
    replay_verify(trace)                       # exits 3 as the recording did


def test_git_commit_forks_its_maintenance_and_replays(tmp_path):
    git = shutil.which("git")
    if git is None:
        pytest.skip("needs git")
    repo = tmp_path / "repo"
    repo.mkdir()
    for args in (["init", "-q"], ["config", "user.email", "t@example.com"], ["config", "user.name", "T"]):
        subprocess.run([git, *args], cwd=repo, check=True)
    (repo / "f").write_text("hello\n")
    subprocess.run([git, "add", "f"], cwd=repo, check=True)
    trace = tmp_path / "git.vmrr"
    record = vmrr("record", "-o", trace, "--", git, "-C", str(repo), "commit", "-q", "-m", "first", timeout=120)
    assert record.returncode == 0 and "cannot fork" not in record.stderr, describe(record)
    log = subprocess.run([git, "log", "--format=%s"], cwd=repo, capture_output=True, text=True, check=True)
    assert log.stdout == "first\n"
    ps = vmrr("ps", trace)
    assert "git maintenance run" in ps.stdout or len(ps.stdout.splitlines()) >= 3, describe(ps)
    replay_verify(trace, timeout=120)


def test_proc_shows_the_programs_other_processes(tmp_path, linux_prog):
    """/proc/PID of a child: its cmdline, status (PPid), exe link; /proc lists both; a reaped
    child's entries are gone -- as natively (pids aside)."""
    program = linux_prog("procpids")
    expected = re.sub(r"/proc/\d+/", "/proc/PID/", native([program]).stdout.decode())
    trace = tmp_path / "procpids.vmrr"
    record = record_linux(trace, [str(program)])
    assert re.sub(r"/proc/\d+/", "/proc/PID/", record.stdout) == expected, describe(record)
    assert "child's PPid is me: 1" in expected and "/proc lists me 1 and my child 1" in expected
    replay = replay_verify(trace)
    assert replay.stdout == record.stdout


def test_futexes_are_per_process_unless_the_memory_is_shared(tmp_path, linux_prog):
    """A condition variable at the same address in parent and child is two futexes (keyed
    by address alone, the parent's signal woke the child's earlier waiter and both hung);
    a process-shared semaphore in MAP_SHARED memory is one (the child's post wakes the parent)."""
    program = linux_prog("futexfork", "pie", "-pthread")
    record, trace = record_like_native(tmp_path, "futexfork", [program])
    assert "PASS futexfork" in record.stdout and "child killed: 1" in record.stdout, describe(record)
    replay = replay_verify(trace)
    assert replay.stdout == record.stdout


def test_shared_memory_between_processes_is_native(tmp_path, linux_prog):
    """System V segments (two attachments, IPC_STAT's counts, IPC_RMID while attached, keys)
    and semaphores (a waiter woken by another process, SEM_UNDO at exit, EIDRM); POSIX shm
    and a memfd mapped by a child after its exec (one copy, though unrelated mappings; a
    pwrite shows through the mapping); 256 MiB of MAP_SHARED memory a child touches first.
    Natively equal, replayed with both counters, and under --chaos."""
    program = linux_prog("sharedmem")
    record, trace = record_like_native(tmp_path, "sharedmem", [program])
    assert "PASS sharedmem" in record.stdout and "child: segsz 12388 nattch 3" in record.stdout, describe(record)
    replay = replay_verify(trace)
    assert replay.stdout == record.stdout, describe(replay)
    reference = vmrr("replay", trace, "--verify", "--counter", "reference", timeout=60)
    assert reference.returncode == 0 and reference.stdout == record.stdout, describe(reference)
    chaos, chaos_trace = record_like_native(tmp_path, "sharedmem-chaos", [program], "--chaos", "7")
    assert replay_verify(chaos_trace).stdout == chaos.stdout


def test_clone3_makes_threads_and_spawns(tmp_path, linux_prog):
    """glibc's pthread_create and posix_spawn use clone3 (no ENOSYS and fallback now); the
    threads and the spawned child are in `vmrr ps` and the events show clone3's flags."""
    program = linux_prog("spawn", "pie", "-pthread")
    record, trace = record_like_native(tmp_path, "spawn", [program])
    assert "threads sum 12" in record.stdout and "spawned" in record.stdout, describe(record)
    assert not [line for line in record.stderr.splitlines() if "not implemented" in line and "clone3" in line]
    assert replay_verify(trace).stdout == record.stdout
    ps = vmrr("ps", trace)
    assert re.search(r"\secho spawned\s*$", ps.stdout, re.M), describe(ps)
    events = vmrr("events", trace)
    assert re.search(r"clone3\(\{flags=0x3d0f00, \.\.\.\}, 88\) = \d+", events.stdout), describe(events)


def test_descriptors_pass_over_a_named_unix_socket(tmp_path, linux_prog):
    """SCM_RIGHTS between a server and the child that connected to its named AF_UNIX socket:
    a pipe end (EOF only once both holders closed), a file whose offset both share, an
    eventfd, MSG_CTRUNC, MSG_CMSG_CLOEXEC, and a read() that closes what came with the bytes."""
    program = linux_prog("unixrights")
    record, trace = record_like_native(tmp_path, "unixrights", [program])
    assert "PASS unixrights" in record.stdout and "offset after the server read: 4" in record.stdout, describe(record)
    replay = replay_verify(trace)
    assert replay.stdout == record.stdout, describe(replay)


@pytest.mark.slow
def test_make_j2_builds_a_c_project_with_gcc(tmp_path):
    """`make -j2` of three objects and a link, in one trace: make, sh, gcc, cc1, as, collect2,
    ld. What it builds runs as the native build's does; `vmrr ps` lists the compilers; the
    trace replays --verify."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "a.c").write_text('#include <stdio.h>\nint b(int); int c(int);\n'
                                 'int main(void) { printf("%d %d\\n", b(20), c(22)); return 0; }\n')
    (project / "b.c").write_text("int b(int x) { return x * 2; }\n")
    (project / "c.c").write_text("int c(int x) { return x + 20; }\n")
    (project / "Makefile").write_text("prog: a.o b.o c.o\n\tgcc -o $@ $^\n%.o: %.c\n\tgcc -O1 -c -o $@ $<\n")
    trace = tmp_path / "make.vmrr"
    record = vmrr("record", "-o", trace, "--", "make", "-C", project, "-j2", "-s", timeout=120)
    assert record.returncode == 0 and "Traceback" not in record.stderr, describe(record)
    built = subprocess.run([str(project / "prog")], capture_output=True, text=True, timeout=10)
    assert built.stdout == "40 42\n"
    ps = vmrr("ps", trace)
    for program in ("make", "cc1", "as", "collect2", "ld"):
        assert re.search(rf"\b{program}\b", ps.stdout), (program, ps.stdout)
    assert len(ps.stdout.splitlines()) >= 12, ps.stdout         # a header and a dozen processes
    replay = replay_verify(trace, timeout=120)
    assert replay.returncode == 0
