"""/proc and /sys as a Linux program sees them in the VM (tests/data/linux/procfs.c).

/proc/self/stat (52 fields), status, cmdline, environ (an --env variable), comm, limits,
/proc/meminfo agreeing with sysinfo, /proc/cpuinfo with one processor and the flags CPUID
reports (no AVX), links (cwd, exe, fd of a pipe), directories (/proc/self, /proc/self/fd).
"""

from __future__ import annotations

import pytest

from linux_helpers import linux_prog, record_replay_linux  # noqa: F401  (fixture)

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("variant", ["pie", "static"])
def test_procfs(linux_prog, tmp_path, variant):
    record, _, _ = record_replay_linux(tmp_path, [linux_prog("procfs", variant), "check"],
                                       "--env", "VMRR_PROBE=42")
    assert "PASS procfs" in record.stdout, record.stdout
