"""Python's ways of starting processes: subprocess with pipes, a shell, os.fork and
os.waitpid, and a multiprocessing pool. Prints only what is the same on every run."""
import multiprocessing
import os
import subprocess
import sys


def square(x):
    return x * x


if __name__ == "__main__":
    done = subprocess.run(["/bin/echo", "from", "subprocess"], capture_output=True, text=True)
    print("subprocess:", done.stdout.strip(), done.returncode)
    done = subprocess.run("echo piped | tr a-z A-Z; exit 3", shell=True, capture_output=True, text=True)
    print("shell:", done.stdout.strip(), done.returncode)
    fed = subprocess.run(["/usr/bin/sort"], input="b\nc\na\n", capture_output=True, text=True)
    print("sorted:", fed.stdout.split())
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        os._exit(sum(range(10)))
    _, status = os.waitpid(pid, 0)
    print("fork: exit", os.waitstatus_to_exitcode(status))
    with multiprocessing.get_context("fork").Pool(2) as pool:
        print("pool:", sum(pool.map(square, range(40))))
