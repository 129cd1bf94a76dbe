"""The conformance corpus: real Debian programs, their inputs, and how each is run and judged.

Shared by ``bench/conformance.py`` (the whole corpus, run by hand) and
``tests/functional/test_conformance.py`` (a quick part of it in the test suite).

A *program* is one command line over generated inputs. A deterministic one runs natively
and under ``vmrr run``, ``vmrr record`` and ``vmrr replay``, and its stdout and exit status
must be the native ones byte for byte: record and replay agreeing with each other is not
enough. A nondeterministic one (clocks, randomness, racing threads) is recorded, and its
replays must print exactly what the recording printed. Every recording is replayed with
``--verify`` under both instruction counters (``--counter fast`` and ``--counter
reference``); some are also recorded with the reference counter (and dense checkpoints
and digests) and replayed with the fast one.

Every program, native or not, sees the same fixed environment (``environment()``): vmrr
runs it with ``--clear-env`` and ``--env`` for each variable. The inputs are made by
``make_inputs`` from a seed, so every run of the corpus sees the same bytes.
"""

from __future__ import annotations

import base64
import gzip
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "tools"
DEFAULT_SEED = 20261203

# What every program sees, natively and under vmrr (plus HOME and TMPDIR, see environment()).
FIXED_ENV = {
    "PATH": "/usr/bin:/bin",
    "LC_ALL": "C",
    "TZ": "UTC",
    "PYTHONHASHSEED": "0",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PERL_HASH_SEED": "0",
    "PERL_PERTURB_KEYS": "0",
}

# vmrr's Linux guest runs on a Westmere CPU model (no AVX, no FMA: vmm/cpu.py), so glibc's
# ifuncs pick other code than on a newer host, and libm's non-FMA sin/log/exp can differ from
# the FMA ones in the last bit. A native run with these glibc features masked runs the code
# the guest runs: the reference that isolates vmrr's own exactness from its CPU model.
VM_CPU_MODEL = "Westmere"
CPU_MATCHED_TUNABLES = ("glibc.cpu.hwcaps=-AVX,-AVX2,-FMA,-FMA4,-F16C,-BMI1,-BMI2,-LZCNT,-MOVBE,-ERMS,-FSRM,"
                        "-AVX512F,-AVX512CD,-AVX512BW,-AVX512DQ,-AVX512VL,-XSAVE,-XSAVEC,-RTM")
QEMU = "/usr/bin/qemu-x86_64"

TEXT_SIZES = {"4K": 4 << 10, "256K": 256 << 10, "1M": 1 << 20, "4M": 4 << 20}
BINARY_SIZES = {"64K": 64 << 10, "1M": 1 << 20, "3M": 3 << 20}

_STATUS = re.compile(r"^vmrr: program exited with status (-?\d+)", re.M)
_INSTRUCTIONS = re.compile(r"after (\d+) instructions")
_REPLAYED = re.compile(r"replayed (\d+) instructions")
_ENOSYS = re.compile(r"^vmrr: not implemented \(returned ENOSYS\): (.*)$", re.M)
_VERIFIED = "vmrr: verified: final registers, devices and RAM match"


def environment(work: Path, *, cpu_matched: bool = False) -> dict[str, str]:
    """The fixed environment, with HOME and TMPDIR inside ``work``.

    ``cpu_matched`` adds GLIBC_TUNABLES masking the host CPU features the VM's CPU model
    lacks (CPU_MATCHED_TUNABLES).
    """
    tmp = work / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env = {**FIXED_ENV, "HOME": str(work), "TMPDIR": str(tmp)}
    if cpu_matched:
        env["GLIBC_TUNABLES"] = CPU_MATCHED_TUNABLES
    return env


# -- the programs ----------------------------------------------------------------------


@dataclass(frozen=True)
class Program:
    """One command of the corpus.

    ``argv`` and ``stdin`` may name ``{in}``, the inputs directory. ``needs`` are the
    executables it uses (absent ones skip it). ``quick`` programs make up ``--quick``;
    ``cross`` ones are also recorded with the reference counter and replayed with the
    fast one; ``tt`` ones get the time-travel check even under ``--quick``.
    """

    name: str
    argv: tuple[str, ...]
    stdin: str | None = None
    deterministic: bool = True
    quick: bool = False
    cross: bool = False
    tt: bool = False
    timeout: float = 600
    record_options: tuple[str, ...] = ()
    note: str = ""

    def command(self, inputs: Path) -> list[str]:
        return [arg.replace("{in}", str(inputs)) for arg in self.argv]

    def stdin_path(self, inputs: Path) -> Path | None:
        return None if self.stdin is None else Path(self.stdin.replace("{in}", str(inputs)))

    @property
    def executable(self) -> str:
        return self.argv[0]


def _p(name: str, *argv: str, **kw) -> Program:
    return Program(name, tuple(argv), **kw)


PY = "/usr/bin/python3"
PROGRAMS: list[Program] = [
    # coreutils over generated text and binary files of several sizes
    _p("sha256sum", "/usr/bin/sha256sum", "{in}/bin-64K", "{in}/bin-1M", "{in}/text-256K", quick=True,
       cross=True, tt=True),
    _p("sha256sum-large", "/usr/bin/sha256sum", "{in}/bin-3M", "{in}/text-4M"),
    _p("md5sum", "/usr/bin/md5sum", "{in}/bin-64K", "{in}/bin-1M", "{in}/bin-3M", "{in}/text-1M", quick=True),
    _p("sort", "/usr/bin/sort", "{in}/text-1M", quick=True, cross=True),
    _p("sort-numeric", "/usr/bin/sort", "-t", " ", "-k3,3g", "-k2,2n", "{in}/text-256K"),
    _p("sort-unique-reverse", "/usr/bin/sort", "-u", "-r", "{in}/text-4M"),
    _p("wc", "/usr/bin/wc", "{in}/text-4K", "{in}/text-256K", "{in}/text-1M", "{in}/text-4M", "{in}/bin-1M",
       quick=True),
    _p("tr", "/usr/bin/tr", "a-z", "A-Z", stdin="{in}/text-1M", quick=True),
    _p("tr-delete-squeeze", "/usr/bin/tr", "-ds", "0-9", " ", stdin="{in}/text-4M"),
    _p("cut", "/usr/bin/cut", "-d", " ", "-f", "2,4", "{in}/text-1M", quick=True),
    _p("base64", "/usr/bin/base64", "{in}/bin-1M", quick=True),
    _p("base64-decode", "/usr/bin/base64", "-d", "{in}/bin-3M.b64"),
    _p("od-hex", "/usr/bin/od", "-A", "x", "-t", "x1z", "-v", "{in}/bin-64K"),
    _p("od-double", "/usr/bin/od", "-A", "d", "-t", "f8", "-v", "{in}/bin-64K"),
    _p("od-long-double", "/usr/bin/od", "-A", "d", "-t", "fL", "-v", "{in}/bin-64K",
       note="long double: x87 (FCW) state at start"),
    _p("grep-count", "/usr/bin/grep", "-c", "-E", "[0-9]{4} -", "{in}/text-4M"),
    _p("sed", "/usr/bin/sed", "-n", r"s/^\([a-z]*\) \([0-9]*\) .*/\2 \1/p", "{in}/text-1M"),
    _p("tar-to-stdout", "/usr/bin/tar", "-cf", "-", "--sort=name", "--mtime=@0", "--owner=0", "--group=0",
       "--numeric-owner", "--format=gnu", "-C", "{in}", "tree"),
    _p("tar-extract-to-stdout", "/usr/bin/tar", "-xOf", "{in}/tree.tar"),
    _p("awk", "/usr/bin/mawk", '{s += $3; n += 1; if ($2 > m) m = $2} '
       'END {printf "%.6f %d %.17g %d %.10e\\n", s, n, s / n, m, s * s}', "{in}/text-1M", quick=True),
    _p("bc", "/usr/bin/bc", "-l", "{in}/numbers.bc"),
    # compression round trips (compressed bytes compared with native too)
    _p("xz-compress", "/usr/bin/xz", "-c", "-6", "-T1", "{in}/text-1M", cross=True),
    _p("xz-compress-fast", "/usr/bin/xz", "-c", "-1", "-T1", "{in}/text-256K", quick=True),
    _p("xz-compress-threads", "/usr/bin/xz", "-c", "-3", "-T2", "--block-size=256KiB", "{in}/text-4M"),
    _p("xz-decompress", "/usr/bin/xz", "-dc", "{in}/text-1M.xz", quick=True),
    _p("gzip-compress", "/usr/bin/gzip", "-c", "-9", "-n", "{in}/text-1M", quick=True),
    _p("gzip-decompress", "/usr/bin/gzip", "-dc", "{in}/text-4M.gz"),
    _p("bzip2-compress", "/usr/bin/bzip2", "-c", "-9", "{in}/text-1M"),
    # python3 scripts
    _p("py-floats", PY, "{in}/floats.py", quick=True, tt=True),
    _p("py-decimal-fractions", PY, "{in}/decimal_fractions.py", quick=True),
    _p("py-hash-json-re", PY, "{in}/hash_json_re.py", "{in}/text-256K", quick=True),
    _p("py-threads", PY, "{in}/threads.py", quick=True, cross=True),
    _p("py-text", PY, "{in}/text.py", "{in}/text-1M"),
    _p("py-epoll-threads", PY, "{in}/epoll_threads.py", quick=True, tt=True),
    # sqlite3, perl, node
    _p("sqlite3-floats", "/usr/bin/sqlite3", ":memory:", stdin="{in}/queries.sql", quick=True,
       note="long double in printf and sums: x87 (FCW) state at start"),
    _p("sqlite3-file", "/usr/bin/sqlite3", "-readonly", "{in}/db.sqlite",
       "SELECT count(*), sum(x), avg(x), printf('%.15g', total(x * x)) FROM t; "
       "SELECT s, avg(x) FROM t GROUP BY s ORDER BY s LIMIT 5;"),
    _p("perl-arith", "/usr/bin/perl", "{in}/arith.pl", quick=True),
    _p("perl-sort-hash", "/usr/bin/perl", "{in}/sort_hash.pl", "{in}/text-256K"),
    _p("node-arith", "/usr/bin/node", "-e",
       "let s = 0; for (let i = 1; i < 300000; i++) s += Math.sqrt(i) / i;"
       "console.log(s, (0.1 + 0.2).toFixed(20), (1e21).toString(36), JSON.stringify([1e300, 5e-324, 1 / 3]));"
       "console.log([3, 1, 2, 10].sort(), Math.fround(0.1), 2 ** 0.5, Number.MAX_SAFE_INTEGER + 2);"),
    # nondeterministic: the replay must print what the recording printed
    _p("sort-random", "/usr/bin/sort", "-R", "{in}/text-256K", deterministic=False, quick=True),
    _p("shuf", "/usr/bin/shuf", "-n", "20", "{in}/text-256K", deterministic=False),
    _p("date", "/usr/bin/date", "+%s.%N %Y-%m-%dT%H:%M:%S %Z", deterministic=False),
    _p("od-urandom", "/usr/bin/od", "-A", "n", "-N", "32", "-t", "x8", "/dev/urandom", deterministic=False),
    _p("py-random-time", PY, "{in}/random_time.py", deterministic=False, quick=True, tt=True),
    _p("py-threads-race", PY, "{in}/race.py", deterministic=False, cross=True),
    _p("py-threads-race-chaos", PY, "{in}/race.py", deterministic=False, record_options=("--chaos=7",)),
    _p("perl-rand-time", "/usr/bin/perl", "-e", 'print rand(), " ", time, " ", join(",", keys %ENV), "\\n"',
       deterministic=False),
    _p("node-random", "/usr/bin/node", "-e", "console.log(Math.random(), Date.now(), process.hrtime())",
       deterministic=False),
]


def find(name: str) -> Program:
    for prog in PROGRAMS:
        if prog.name == name:
            return prog
    raise KeyError(name)


# -- the inputs ------------------------------------------------------------------------


def _words(rng: random.Random, count: int) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(2, 9))) for _ in range(count)]


def _text_lines(rng: random.Random, size: int, vocabulary: list[str]) -> bytes:
    """Lines 'word int float word wordN' until ``size`` bytes (cut at a line end)."""
    lines, total = [], 0
    while total < size:
        line = (f"{rng.choice(vocabulary)} {rng.randrange(100000)} {rng.uniform(-1000, 1000):.4f} "
                f"{rng.choice(vocabulary)} {rng.choice(vocabulary)}{rng.randrange(100)}\n")
        lines.append(line)
        total += len(line)
    data = "".join(lines).encode()
    return data[:data.rindex(b"\n", 0, size) + 1]


def make_inputs(directory: Path, *, seed: int = DEFAULT_SEED, small: bool = False) -> Path:
    """Write the corpus's input files into ``directory`` (created) and return it.

    Text and binary files of several sizes from ``seed``, the scripts the python3, perl,
    sqlite3 and bc programs run, a directory tree for tar, and compressed copies made by
    the native tools (the decompression programs read those). The same seed gives the
    same bytes; ``small`` leaves out the files larger than 1 MiB (the others are the same).
    """
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    vocabulary = _words(rng, 400)
    for label, size in TEXT_SIZES.items():
        data = _text_lines(rng, size, vocabulary)
        if not small or size <= 1 << 20:
            (directory / f"text-{label}").write_bytes(data)
    for label, size in BINARY_SIZES.items():
        data = rng.randbytes(size)
        if not small or size <= 1 << 20:
            (directory / f"bin-{label}").write_bytes(data)
    if not small:
        (directory / "bin-3M.b64").write_bytes(base64.encodebytes((directory / "bin-3M").read_bytes()))
        (directory / "text-4M.gz").write_bytes(gzip.compress((directory / "text-4M").read_bytes(), 6, mtime=0))
    tree = directory / "tree"
    (tree / "sub").mkdir(parents=True, exist_ok=True)
    for i in range(6):
        (tree / f"file{i}.txt").write_bytes(_text_lines(rng, 3000 * (i + 1), vocabulary))
    (tree / "sub" / "data.bin").write_bytes(rng.randbytes(20000))
    (tree / "sub" / "empty").write_bytes(b"")
    with tarfile.open(directory / "tree.tar", "w", format=tarfile.GNU_FORMAT) as tar:
        for path in sorted(tree.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(directory)), recursive=False)
    for name, text in SCRIPTS.items():
        (directory / name).write_text(text)
    # Lighter versions for the test suite: fewer rows, fewer iterations.
    (directory / "queries-small.sql").write_text(SCRIPTS["queries.sql"].replace("i < 20000", "i < 2000")
                                                 .replace("i % 2500 = 0", "i % 250 = 0"))
    (directory / "arith-small.pl").write_text(SCRIPTS["arith.pl"].replace("1 .. 200000", "1 .. 20000"))
    if shutil.which("xz"):
        subprocess.run(["xz", "-k", "-f", "-6", "-T1", str(directory / "text-1M")], check=True, timeout=120)
    if shutil.which("sqlite3"):
        db = directory / "db.sqlite"
        db.unlink(missing_ok=True)
        subprocess.run(["sqlite3", str(db)], input=SCRIPTS["queries.sql"].split("-- queries")[0].encode(),
                       check=True, timeout=120, capture_output=True)
    return directory


SCRIPTS: dict[str, str] = {}
SCRIPTS["floats.py"] = r'''
import cmath, math, struct
values = [0.1, 0.2, 1 / 3, 2 / 3, 1e-300, 5e-324, 1.7976931348623157e308, math.pi, math.e, -0.0,
          123456789.123456789, 2.5, 3.5, -2.5, 1e16, 1e22, 1e23, 9007199254740993.0, 0.1 + 0.2]
for v in values:
    print(repr(v), str(v), f"{v:.17g}", f"{v:e}", f"{v:.3f}", f"{v:g}", f"{v:%}", v.hex(), round(v, 3),
          struct.pack("<d", v).hex(), struct.pack("<f", v).hex() if abs(v) < 3e38 else "-", v.as_integer_ratio())
x = 0.0
for i in range(1, 20001):
    x += math.sin(i) * math.sqrt(i) / (1 + math.log(i))
print(repr(x), math.fsum(1 / i for i in range(1, 100000)), sum(i * 0.1 for i in range(100000)))
for f in (math.exp, math.log, math.log2, math.log10, math.log1p, math.expm1, math.sin, math.cos, math.tan,
          math.atan, math.asinh, math.tanh, math.erf, math.erfc, math.gamma, math.lgamma, math.cbrt, math.sqrt):
    print(f.__name__, [repr(f(a)) for a in (0.5, 1.5, 7.25, 20.0, 123.456)])
print(math.hypot(3e200, 4e200), math.pow(2, 0.5), 2 ** 0.5, 10 ** -5, math.fmod(-7.5, 2), divmod(-7.5, 2),
      math.atan2(-0.0, -1.0), math.copysign(1, -0.0), math.nextafter(1, 2), math.ulp(1e300), math.ldexp(0.75, 1020))
print(float("1e23"), float("0.30000000000000004"), float("inf"), float("-nan"), int(1e20), 10 ** 30 / 7,
      (10 ** 30) // 7, math.isqrt(10 ** 40 + 1), (2 ** 200 + 1) / 3, int("9" * 50) * 1.0, 7 ** 0.5 * 7 ** 0.5)
print(f"{1e16:,.2f}", format(1234567.891, "_.4e"), "%.40f" % 0.1, "%r" % 1e-7, "%.0f" % 0.5, "%.0f" % 1.5,
      f"{2.675:.2f}", f"{1e-5:g}", f"{123456789012345678:e}", round(2.675, 2), round(0.5), round(1.5))
print(cmath.sqrt(-2), cmath.exp(1j * math.pi), cmath.phase(-1 + 0j), cmath.log(1 + 2j), abs(3 + 4j) ** 0.5)
print(math.comb(100, 50), math.perm(30, 10), math.factorial(40) / 3, math.prod([1.1] * 50), math.dist((0, 0), (1, 1)))
'''
SCRIPTS["decimal_fractions.py"] = r'''
import statistics
from decimal import Decimal, getcontext, localcontext, ROUND_HALF_EVEN
from fractions import Fraction
getcontext().prec = 60
print(Decimal(2).sqrt(), Decimal(1).exp(), Decimal(10).ln(), Decimal(1) / Decimal(7), Decimal(2) ** Decimal("0.5"))
print(Decimal("0.1") + Decimal("0.2"), Decimal("1.30") * Decimal("1.20"), Decimal(0.1), Decimal("1e-30").log10())
with localcontext() as ctx:
    ctx.prec, ctx.rounding = 10, ROUND_HALF_EVEN
    print([+Decimal(x) / 3 for x in range(1, 8)], Decimal("2.5").quantize(Decimal("1")), Decimal(7).sqrt())
s = sum(Fraction(1, k) for k in range(1, 300))
print(s.numerator % 10 ** 30, s.denominator % 10 ** 30, float(s), Fraction(3.1415926535).limit_denominator(1000),
      Fraction("0.125"), Fraction(1, 3) ** 5, Fraction(2 ** 60 + 1, 3 ** 30) + Fraction(1, 7))
data = [((i * 7919) % 1000) / 7 for i in range(5000)]
print(statistics.mean(data), statistics.median(data), statistics.stdev(data), statistics.pvariance(data),
      statistics.fmean(data), statistics.geometric_mean([d + 1 for d in data]),
      statistics.harmonic_mean([d + 1 for d in data]))
print(statistics.quantiles(data, n=10), statistics.correlation(data, data[::-1]),
      statistics.linear_regression(range(len(data)), data))
print(statistics.NormalDist(100, 15).cdf(130), statistics.NormalDist(0, 1).inv_cdf(0.975),
      statistics.mean([Fraction(1, 3), Fraction(2, 7)]), statistics.mean([Decimal("0.1"), Decimal("0.25")]))
'''
SCRIPTS["hash_json_re.py"] = r'''
import base64, binascii, hashlib, json, pickle, re, struct, sys, zlib
data = open(sys.argv[1], "rb").read()
for name in ("md5", "sha1", "sha224", "sha256", "sha512", "sha3_256", "blake2b", "blake2s"):
    print(name, hashlib.new(name, data).hexdigest())
print("crc32", zlib.crc32(data), "adler32", zlib.adler32(data), len(zlib.compress(data, 9)),
      binascii.crc_hqx(data[:65536], 0), hashlib.pbkdf2_hmac("sha256", b"pw", b"salt", 2000).hex())
text = data.decode()
words = re.findall(r"\b[a-z]+\d*\b", text)
print(len(words), words[:5], len(re.findall(r"(?m)^\w+ \d{3,5} ", text)))
print(re.sub(r"\d+", lambda m: str(int(m.group()) * 2), text[:300]))
counts = {}
for w in words:
    counts[w] = counts.get(w, 0) + 1
doc = {"counts": sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:50], "floats": [i / 7 for i in range(50)],
       "nested": {"a": [1, 2.5, None, True, "x\u00e9\u4e2d"]}}
dumped = json.dumps(doc, sort_keys=True, indent=1)
print(hashlib.sha256(dumped.encode()).hexdigest(), json.loads(dumped) == {**doc, "counts": [list(c) for c in doc["counts"]]})
print(json.dumps([1e300, 1e-300, 0.1, 2 ** 70, -0.0, 1 / 3]), json.loads("[1.7976931348623157e308, 4.9e-324]"))
print(struct.pack("<iqdfH", -5, 2 ** 40, 1.5, 0.1, 65535).hex(), struct.unpack(">d", bytes.fromhex("400921fb54442d18")))
print(hashlib.sha256(pickle.dumps(doc, protocol=5)).hexdigest(), base64.b85encode(data[:40]).decode())
print(hash("abc"), hash((1, 2.5, "x")), hash(frozenset(words[:100])), list({w: 0 for w in words[:30]}))
'''
SCRIPTS["threads.py"] = r'''
import hashlib, queue, threading
from concurrent.futures import ThreadPoolExecutor
def work(n):
    s = 0
    for i in range(n * 1500):
        s += i * i % 97
    return n, s, hashlib.sha256(str(s).encode()).hexdigest()[:16]
with ThreadPoolExecutor(max_workers=4) as ex:
    for row in ex.map(work, range(1, 25)):
        print(*row)
q, results, lock = queue.Queue(), [], threading.Lock()
def consumer():
    while (item := q.get()) is not None:
        with lock:
            results.append(item * item)
consumers = [threading.Thread(target=consumer) for _ in range(3)]
for t in consumers:
    t.start()
for i in range(3000):
    q.put(i)
for _ in consumers:
    q.put(None)
for t in consumers:
    t.join()
print(len(results), sum(results), sorted(results)[-3:])
cond, turn, out = threading.Condition(), [0], []
def player(k):
    for _ in range(40):
        with cond:
            cond.wait_for(lambda: turn[0] % 3 == k)
            out.append(str(k))
            turn[0] += 1
            cond.notify_all()
players = [threading.Thread(target=player, args=(k,)) for k in range(3)]
for t in players:
    t.start()
for t in players:
    t.join()
print("".join(out))
barrier, seen = threading.Barrier(4), []
def meet(k):
    barrier.wait()
    with lock:
        seen.append(k)
meeting = [threading.Thread(target=meet, args=(k,)) for k in range(4)]
for t in meeting:
    t.start()
for t in meeting:
    t.join()
print(sorted(seen), threading.active_count())
'''
SCRIPTS["text.py"] = r'''
import collections, hashlib, sys
lines = open(sys.argv[1], encoding="ascii").read().splitlines()
words = collections.Counter(w for line in lines for w in line.split()[::3])
print(len(lines), words.most_common(15))
ordered = sorted(lines, key=lambda l: (float(l.split()[2]), l))
print(hashlib.sha256("\n".join(ordered).encode()).hexdigest(), ordered[:2], ordered[-1])
total = sum(float(l.split()[2]) for l in lines)
print(total, f"{total:.3f}", sum(int(l.split()[1]) for l in lines) / len(lines))
'''
SCRIPTS["random_time.py"] = r'''
import os, random, secrets, time, uuid
print(random.random(), random.randint(1, 10 ** 12), os.urandom(8).hex(), secrets.token_hex(8), uuid.uuid4())
print(time.time(), time.monotonic_ns(), time.perf_counter(), time.process_time(), time.strftime("%Y-%m-%d %H:%M"))
'''
SCRIPTS["race.py"] = r'''
import sys, threading
sys.setswitchinterval(1e-6)
order, counter = [], [0]
def spin(k):
    for _ in range(3000):
        order.append(k)
        value = counter[0]
        counter[0] = value + 1
threads = [threading.Thread(target=spin, args=(k,)) for k in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
runs, last = 0, None
for k in order:
    runs += k != last
    last = k
print("switches", runs, "lost updates", 4 * 3000 - counter[0], "head", "".join(map(str, order[:60])))
'''
SCRIPTS["mix.py"] = r'''
# floats, decimal and fractions, hashing/json/re and threads in one interpreter (one start-up)
import os, runpy, sys
here, text = os.path.dirname(os.path.abspath(__file__)), sys.argv[1]
for script in ("floats.py", "decimal_fractions.py", "hash_json_re.py", "threads.py"):
    sys.argv = [script, text]
    print("==", script)
    runpy.run_path(os.path.join(here, script), run_name="__main__")
'''
SCRIPTS["quick.py"] = r'''
# The test suite's python3 program: a little of everything, in one short interpreter run.
import hashlib, json, math, re, struct, sys, threading, zlib
from decimal import Decimal, getcontext
from fractions import Fraction
for v in (0.1, 1 / 3, 2.5, -0.0, 1e-300, 5e-324, 1e22, math.pi, 0.1 + 0.2):
    print(repr(v), f"{v:.17g}", f"{v:e}", f"{v:.3f}", v.hex(), round(v, 3), struct.pack("<d", v).hex())
print([repr(f(1.75)) for f in (math.exp, math.log, math.sin, math.atan, math.erf, math.lgamma, math.sqrt)])
print(math.fsum(1 / i for i in range(1, 5000)), sum(i * 0.1 for i in range(5000)), 10 ** 30 / 7, 2 ** 0.5)
getcontext().prec = 50
print(Decimal(2).sqrt(), Decimal(1) / Decimal(7), Decimal(10).ln(), Decimal("1.30") * Decimal("1.20"))
print(sum(Fraction(1, k) for k in range(1, 60)), Fraction(3.1415926535).limit_denominator(1000))
data = open(sys.argv[1], "rb").read()[:65536]
print(hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest(), hashlib.blake2b(data).hexdigest()[:32],
      zlib.crc32(data), len(zlib.compress(data, 6)))
words = re.findall(rb"\b[a-z]+\d*\b", data)
print(len(words), json.dumps({"w": [w.decode() for w in words[:8]], "f": [i / 7 for i in range(5)]}, sort_keys=True))
print(hash("abc"), hash((1, 2.5)))
results = [None] * 12
def work(n):
    results[n - 1] = n, sum(i * i % 97 for i in range(n * 300))
workers = [threading.Thread(target=work, args=(n,)) for n in range(1, 13)]
for t in workers:
    t.start()
for t in workers:
    t.join()
print(results)
lock, total = threading.Lock(), [0]
def add(k):
    for _ in range(200):
        with lock:
            total[0] += k
threads = [threading.Thread(target=add, args=(k,)) for k in range(1, 5)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(total[0])
'''
SCRIPTS["epoll_threads.py"] = r'''
# epoll over a pipe a thread writes to; the interest list changes all the time (every ~1M
# instructions), so a position anywhere has an epoll_ctl shortly before and after it
import os, select, threading
r, w = os.pipe()
ep = select.epoll()
def writer():
    for i in range(5):
        os.write(w, b"%d;" % i)
t = threading.Thread(target=writer)
t.start()
t.join()
got, s = [], 0
for round in range(14):
    ep.register(r, select.EPOLLIN)
    got.append(ep.poll(1 if round == 0 else 0))   # seconds: only round 0 has data
    if round == 0:
        got.append(os.read(r, 100))
    for i in range(800):
        s += i * i % 7
    ep.unregister(r)
ep.register(w, select.EPOLLOUT)
print(got, s, ep.poll(0))
ep.modify(w, select.EPOLLIN)
print(ep.poll(0))
'''
SCRIPTS["queries.sql"] = r'''
CREATE TABLE t(i INTEGER, x REAL, s TEXT);
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 20000)
INSERT INTO t SELECT i, (i * 7919 % 1000) / 7.0 + i * 1e-3, 'k' || (i % 97) FROM c;
-- queries
SELECT count(*), sum(x), avg(x), total(x), min(x), max(x) FROM t;
SELECT s, count(*), avg(x), printf('%.17g', sum(x * x)) FROM t GROUP BY s ORDER BY s LIMIT 12;
SELECT printf('%.20f %e %g %!.30f', 1.0 / 3, 6.02214076e23, 0.1, 0.1), 1e308 * 10, round(2.5), round(-2.5),
       round(1.005, 2), 0.1 + 0.2, 1e16 + 1.5;
SELECT sqrt(2), exp(1), ln(10), pow(2, 0.5), sin(1), atan2(1, 2), log10(7), degrees(pi());
SELECT cast(9007199254740993 AS REAL), 9223372036854775807 + 1, 1 / 0, 7 % 3, -7 / 2, 5.0 / 3, cast('1e500' AS REAL);
SELECT group_concat(x, ',') FROM (SELECT x FROM t ORDER BY x DESC LIMIT 6);
SELECT json_object('a', 1.5, 'b', 1e-10, 'c', 2.0 / 3), json_extract('{"v": 0.30000000000000004}', '$.v');
SELECT i, x, x * x / 3.0 FROM t WHERE i % 2500 = 0;
SELECT avg(i * 1.1), sum(1.0 / i), printf('%.15f', avg(1.0 / i)) FROM t;
'''
SCRIPTS["numbers.bc"] = r'''
scale = 300
4 * a(1)
sqrt(2)
e(1)
l(10)
scale = 0
2 ^ 1000
3 ^ 200 % 1000000007
scale = 40
s(1) + c(1)
1 / 7
quit
'''
SCRIPTS["arith.pl"] = r'''
use strict; use warnings;
my $s = 0; $s += sqrt($_) * sin($_) / (1 + log($_)) for 1 .. 200000;
printf "%.15g %.17e %s\n", $s, $s, $s;
print 2 ** 0.5, " ", 1 / 7, " ", 10 ** 21, " ", 2 ** 53 + 1, " ", 9 ** 20, " ", -7 / 2, " ", -7 % 3, " ", int(-7 / 2), "\n";
printf "%.30f %e %g %.0f %.0f %x %o %b %s\n", 1 / 3, 6.02e23, 0.0001, 0.5, 1.5, 255, 8, 10, 0.1 + 0.2;
printf "%s %s %s\n", 1e300 * 1e10, -9 ** 9 ** 9, atan2(1, 1) * 4;
my @n = map { ($_ * 7919) % 1000 / 7 } 1 .. 5000;
my @sorted = sort { $a <=> $b } @n; my $sum = 0; $sum += $_ for @n;
printf "%d %.12f %.12f %.12f\n", scalar(@n), $sum, $sorted[0], $sorted[-1];
print join(",", map { sprintf "%.3f", $_ } @sorted[0 .. 9]), "\n";
'''
SCRIPTS["sort_hash.pl"] = r'''
use strict; use warnings;
my (%count, @lines);
while (my $line = <>) { chomp $line; push @lines, $line; $count{(split / /, $line)[0]}++; }
my @by_number = sort { (split / /, $a)[1] <=> (split / /, $b)[1] or $a cmp $b } @lines;
print "$_\n" for @by_number[0 .. 4], @by_number[-3 .. -1];
print join(" ", (sort { $count{$b} <=> $count{$a} or $a cmp $b } keys %count)[0 .. 19]), "\n";
my %h; $h{"k$_"} = $_ for 1 .. 3000;
print join(",", (keys %h)[0 .. 40]), "\n";
print scalar(keys %count), " ", join(",", map { sprintf "%.2f", $_ } (values %h)[0 .. 5]), "\n";
'''


# -- running one step ------------------------------------------------------------------


@dataclass
class Step:
    """One run of a program in one mode (native, run, record, replay, ...) and its verdict."""

    status: str = "-"            # ok, DIFF, FAIL, TIMEOUT, skip, -
    seconds: float = 0.0
    detail: str = ""
    exit_status: int | None = None
    instructions: int | None = None
    stdout: bytes = b""
    stderr: str = ""
    returncode: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def cell(self) -> str:
        return self.status


@dataclass
class ProgramResult:
    name: str
    deterministic: bool
    steps: dict[str, Step] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(step.status in ("ok", "-", "skip") for step in self.steps.values())

    @property
    def instructions(self) -> int | None:
        for mode in ("record", "run"):
            step = self.steps.get(mode)
            if step is not None and step.instructions is not None:
                return step.instructions
        return None

    def failures(self) -> list[tuple[str, Step]]:
        return [(mode, step) for mode, step in self.steps.items() if step.status not in ("ok", "-", "skip")]


def first_difference(expected: bytes, actual: bytes, *, names: tuple[str, str] = ("native", "vmrr")) -> str:
    """Where two outputs first differ: byte offset, line, and a few bytes of each around it."""
    if expected == actual:
        return ""
    n = next((i for i, (a, b) in enumerate(zip(expected, actual)) if a != b), min(len(expected), len(actual)))
    line = expected.count(b"\n", 0, n) + 1
    start = max(0, n - 20)
    return (f"first difference at byte {n} (line {line}; lengths {len(expected)} vs {len(actual)}): "
            f"{names[0]} {expected[start:n + 40]!r} vs {names[1]} {actual[start:n + 40]!r}")


def vmrr_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("vmrr:")]


def guest_stderr(stderr: str) -> str:
    """The program's own stderr: vmrr's stderr without its "vmrr:" lines."""
    return "\n".join(line for line in stderr.splitlines() if not line.startswith("vmrr:"))


def vmrr_traceback(stderr: str) -> bool:
    """Whether vmrr itself printed a traceback (the program's own, e.g. Python's, do not count)."""
    return "Traceback" in stderr and f'File "{ROOT}/' in stderr


def vmrr_problem(stderr: str) -> str:
    """The most telling vmrr line of a failed run: a divergence, crash or error message."""
    lines = vmrr_lines(stderr)
    for word in ("diverge", "mismatch", "crash", "deadlock", "error", "Error", "killed", "signal", "refuse"):
        for line in lines:
            if word in line:
                return line
    if vmrr_traceback(stderr):
        return "vmrr traceback: " + stderr.strip().splitlines()[-1]
    tail = [line for line in stderr.strip().splitlines() if line.strip()]
    return tail[-1] if tail else "(no message)"


class Runner:
    """Runs programs natively and under vmrr with the fixed environment.

    Args:
        work: a scratch directory (HOME and TMPDIR for the programs; traces go here).
        vmrr: the command that starts vmrr (default: this Python running vmrr.py).
        cpu_matched: run every program (natively and under vmrr) with the host CPU
            features the VM lacks masked from glibc (CPU_MATCHED_TUNABLES).
    """

    def __init__(self, work: Path, vmrr: list[str] | None = None, *, cpu_matched: bool = False) -> None:
        self.work = work
        self.cpu_matched = cpu_matched
        self.env = environment(work, cpu_matched=cpu_matched)
        self.vmrr = vmrr or [sys.executable, str(ROOT / "vmrr.py")]
        self.env_options = ["--clear-env"] + [opt for k, v in self.env.items() for opt in ("--env", f"{k}={v}")]

    def _exec(self, argv: list[str], *, env: dict | None, stdin: Path | None, timeout: float,
              cwd: Path) -> tuple[subprocess.CompletedProcess | None, float]:
        started = time.perf_counter()
        stdin_file = open(stdin, "rb") if stdin is not None else subprocess.DEVNULL
        try:
            proc = subprocess.Popen(argv, env=env, stdin=stdin_file, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, cwd=cwd, start_new_session=True)
            try:
                out, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                out, err = proc.communicate()
                return subprocess.CompletedProcess(argv, None, out, err), time.perf_counter() - started
            return subprocess.CompletedProcess(argv, proc.returncode, out, err), time.perf_counter() - started
        finally:
            if stdin is not None:
                stdin_file.close()

    def native(self, argv: list[str], *, stdin: Path | None = None, timeout: float = 600,
               cwd: Path | None = None) -> Step:
        proc, seconds = self._exec(argv, env=self.env, stdin=stdin, timeout=timeout, cwd=cwd or self.work)
        step = Step(seconds=round(seconds, 2), stdout=proc.stdout, stderr=_text(proc.stderr),
                    returncode=proc.returncode, exit_status=proc.returncode)
        if proc.returncode is None:
            step.status, step.detail = "TIMEOUT", f"native run exceeded {timeout} s"
        else:
            step.status = "ok"
        return step

    def vmrr_cmd(self, *args: str, stdin: Path | None = None, timeout: float = 600,
                 cwd: Path | None = None) -> Step:
        """Run vmrr ARGS; the Step holds stdout, stderr, the program's exit status and icount."""
        proc, seconds = self._exec([*self.vmrr, *args], env=None, stdin=stdin, timeout=timeout,
                                   cwd=cwd or self.work)
        err = _text(proc.stderr)
        step = Step(seconds=round(seconds, 2), stdout=proc.stdout, stderr=err, returncode=proc.returncode)
        status = _STATUS.search(err)
        step.exit_status = int(status.group(1)) if status else None
        count = _INSTRUCTIONS.search(err) or _REPLAYED.search(err)
        step.instructions = int(count.group(1)) if count else None
        if proc.returncode is None:
            step.status, step.detail = "TIMEOUT", f"exceeded {timeout} s"
        elif vmrr_traceback(err) or "internal error" in err:
            step.status, step.detail = "FAIL", vmrr_problem(err)
        else:
            step.status = "ok"
        return step

    def program_options(self) -> list[str]:
        return list(self.env_options)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _text(data: bytes | None) -> str:
    return "" if data is None else data.decode("utf-8", errors="replace")


def enosys_calls(stderr: str) -> str:
    """'fork x2, rseq x1' from vmrr's summary, without rseq (glibc expects it)."""
    match = _ENOSYS.search(stderr)
    if not match:
        return ""
    calls = [c.strip() for c in match.group(1).split(",") if not c.strip().startswith("rseq")]
    return ", ".join(calls)


# -- judging one program ---------------------------------------------------------------


@dataclass
class CheckOptions:
    """What ``check_program`` does beyond native/run/record/replay."""

    run: bool = True                                  # also `vmrr run`
    counters: tuple[str, ...] = ("fast", "reference")  # replay --verify with each
    cross: bool = True                                # record --counter reference, replay fast (if prog.cross)
    time_travel: bool = True
    tt_positions: int = 6
    tt_step_backs: int = 3
    seed: int = DEFAULT_SEED
    retry: bool = True                                # rerun a failed step once: does it reproduce?
    keep_traces: bool = False
    tt_in_process: bool = False                       # tests: call ttcheck directly


def check_program(prog: Program, runner: Runner, inputs: Path, options: CheckOptions | None = None,
                  traces: Path | None = None) -> ProgramResult:
    """Run one program in every mode and judge each step.

    Steps (keys of ``result.steps``): ``native``, ``run``, ``record``, ``replay-fast``,
    ``replay-reference``, ``cross`` (recorded with the reference counter, replayed with
    the fast one) and ``timetravel``.
    """
    options = options or CheckOptions()
    traces = traces or runner.work / "traces"
    traces.mkdir(parents=True, exist_ok=True)
    result = ProgramResult(prog.name, prog.deterministic)
    if not Path(prog.executable).is_file():
        result.steps["native"] = Step("skip", detail=f"{prog.executable} is not installed")
        return result
    argv, stdin = prog.command(inputs), prog.stdin_path(inputs)

    native = runner.native(argv, stdin=stdin, timeout=prog.timeout)
    result.steps["native"] = native
    if native.ok and native.exit_status != 0:
        native.status = "FAIL"
        native.detail = f"exits {native.exit_status} natively: {_text(native.stderr.encode())[-300:]}"
    reference = native if prog.deterministic and native.ok else None

    def judge_output(step: Step, mode: str) -> None:
        if step.status != "ok":
            return
        if step.exit_status is None:
            step.status, step.detail = "FAIL", vmrr_problem(step.stderr)
            return
        if reference is not None:
            if step.stdout != reference.stdout:
                step.status = "DIFF"
                step.detail = first_difference(reference.stdout, step.stdout, names=("native", mode))
            elif step.exit_status != reference.exit_status:
                step.status = "DIFF"
                step.detail = f"exit status {step.exit_status}, natively {reference.exit_status}"
        elif step.exit_status != 0 and (native.exit_status == 0 or not native.ok):
            step.status = "FAIL"
            step.detail = f"exit status {step.exit_status}: {guest_stderr(step.stderr)[-300:]}"

    diagnosed: dict[bytes, str] = {}

    def diagnose(step: Step) -> None:
        """A DIFF from native: is it the CPU model? Compare a CPU-matched native run and QEMU."""
        if step.status != "DIFF" or reference is None or step.exit_status != reference.exit_status:
            return
        if step.stdout not in diagnosed:
            diagnosed[step.stdout] = _cpu_model_diagnosis(prog, runner, argv, stdin, step.stdout)
        verdict = diagnosed[step.stdout]
        if verdict.startswith("cpu model"):
            step.status = "DIFF-cpu"
        step.detail += f" ({verdict})"

    def retry(step: Step, again) -> None:
        """Rerun a failed step once; say whether the failure reproduced."""
        if step.ok or not options.retry or step.status == "TIMEOUT":
            return
        second = again()
        if second.status == step.status and second.stdout == step.stdout and second.detail == step.detail:
            step.detail += " [reproduces]"
        elif second.ok:
            step.detail += " [flaky: passed on a second try]"
        else:
            step.detail += f" [second try: {second.status} {second.detail[:200]}]"

    program_opts = runner.program_options()
    if options.run:
        def do_run() -> Step:
            step = runner.vmrr_cmd("run", *program_opts, "--", *argv, stdin=stdin, timeout=_slow(prog.timeout))
            judge_output(step, "run")
            return step
        result.steps["run"] = do_run()
        retry(result.steps["run"], do_run)
        diagnose(result.steps["run"])

    trace = traces / f"{prog.name}.vmrr"

    def do_record(path: Path = trace, extra: tuple[str, ...] = ()) -> Step:
        for stale in (path, Path(f"{path}.idx"), Path(f"{path}.incomplete")):
            stale.unlink(missing_ok=True)
        step = runner.vmrr_cmd("record", "-o", str(path), *extra, *prog.record_options, *program_opts, "--",
                               *argv, stdin=stdin, timeout=_slow(prog.timeout))
        judge_output(step, "record")
        if step.status == "ok" and not path.is_file():
            step.status, step.detail = "FAIL", "no trace written: " + vmrr_problem(step.stderr)
        return step

    record = do_record()
    result.steps["record"] = record
    missing = enosys_calls(record.stderr)
    if missing:
        result.notes.append(f"ENOSYS: {missing}")
    if record.status != "ok" and options.retry and record.status != "TIMEOUT":
        retry(record, lambda: do_record(traces / f"{prog.name}.retry.vmrr"))
        Path(traces / f"{prog.name}.retry.vmrr").unlink(missing_ok=True)
    diagnose(record)

    if trace.is_file():
        for counter in options.counters:
            mode = f"replay-{counter}"

            def do_replay(counter=counter) -> Step:
                return _replay(runner, trace, counter, record, prog)
            result.steps[mode] = do_replay()
            retry(result.steps[mode], do_replay)
        if options.cross and prog.cross:
            cross_trace = traces / f"{prog.name}.reference.vmrr"
            cross = do_record(cross_trace, ("--counter", "reference", "--checkpoint-every", "3000000",
                                            "--digest-every", "500000"))
            if cross.ok and cross_trace.is_file():
                cross = _replay(runner, cross_trace, "fast", cross, prog)
            result.steps["cross"] = cross
            if not options.keep_traces:
                for path in (cross_trace, Path(f"{cross_trace}.idx")):
                    path.unlink(missing_ok=True)
        if options.time_travel:
            result.steps["timetravel"] = time_travel_step(trace, runner, options, timeout=_slow(prog.timeout) * 3)
        if not options.keep_traces:
            for path in (trace, Path(f"{trace}.idx")):
                path.unlink(missing_ok=True)
    else:
        for counter in options.counters:
            result.steps[f"replay-{counter}"] = Step("-", detail="no trace")
    return result


def _cpu_model_diagnosis(prog: Program, runner: Runner, argv: list[str], stdin: Path | None,
                         vmrr_stdout: bytes) -> str:
    """Why vmrr's output differs from native: its CPU model, or vmrr itself?

    Runs the program natively with the host features the VM lacks masked from glibc, and
    under QEMU's user-mode emulator (same TCG as Unicorn) on the same CPU model.
    """
    if runner.cpu_matched:
        return "the native run already had the VM's CPU features"
    matched = Runner(runner.work, runner.vmrr, cpu_matched=True).native(argv, stdin=stdin, timeout=prog.timeout)
    same_as_matched = matched.ok and matched.stdout == vmrr_stdout
    qemu = ""
    if Path(QEMU).is_file():
        emulated = runner.native([QEMU, "-cpu", VM_CPU_MODEL, *argv], stdin=stdin, timeout=_slow(prog.timeout))
        if emulated.ok:
            if emulated.stdout == vmrr_stdout:
                qemu = f"; qemu-x86_64 -cpu {VM_CPU_MODEL} prints what vmrr prints"
            else:
                qemu = (f"; qemu-x86_64 -cpu {VM_CPU_MODEL} differs from vmrr: "
                        + first_difference(emulated.stdout, vmrr_stdout, names=("qemu", "vmrr")))
    if same_as_matched:
        return (f"cpu model: equal to native with glibc features masked to the VM's {VM_CPU_MODEL} "
                f"(GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX2,-FMA,...){qemu}")
    return (f"not the CPU model: native with glibc features masked to {VM_CPU_MODEL} differs too: "
            + first_difference(matched.stdout, vmrr_stdout, names=("masked native", "vmrr")) + qemu)


def _slow(timeout: float) -> float:
    """Emulation is far slower than native: the timeout for a step under vmrr."""
    return max(timeout, 60) * 3


def _replay(runner: Runner, trace: Path, counter: str, record: Step, prog: Program) -> Step:
    """``vmrr replay TRACE --verify --counter COUNTER``: verified, and the recorded output again."""
    step = runner.vmrr_cmd("replay", str(trace), "--verify", "--counter", counter, timeout=_slow(prog.timeout))
    if step.status != "ok":
        return step
    if step.returncode != 0 or _VERIFIED not in step.stderr:
        step.status, step.detail = "FAIL", vmrr_problem(step.stderr)
    elif step.stdout != record.stdout:
        step.status = "DIFF"
        step.detail = first_difference(record.stdout, step.stdout, names=("record", "replay"))
    elif guest_stderr(step.stderr) != guest_stderr(record.stderr):
        step.status = "DIFF"
        step.detail = "stderr: " + first_difference(guest_stderr(record.stderr).encode(),
                                                     guest_stderr(step.stderr).encode(), names=("record", "replay"))
    elif record.instructions is not None and step.instructions not in (None, record.instructions):
        step.status, step.detail = "DIFF", f"replayed {step.instructions} instructions, recorded {record.instructions}"
    return step


def time_travel_step(trace: Path, runner: Runner, options: CheckOptions, *, timeout: float) -> Step:
    """The time-travel check (tools/ttcheck.py) on ``trace``, in a child process by default."""
    if options.tt_in_process:
        sys.path.insert(0, str(TOOLS)) if str(TOOLS) not in sys.path else None
        import ttcheck
        started = time.perf_counter()
        report = ttcheck.check_time_travel(trace, seed=options.seed, positions=options.tt_positions,
                                           step_backs=options.tt_step_backs)
        return Step("ok" if report.ok else "FAIL", round(time.perf_counter() - started, 2), report.summary())
    argv = [sys.executable, str(TOOLS / "ttcheck.py"), str(trace), "--seed", str(options.seed),
            "--positions", str(options.tt_positions), "--step-backs", str(options.tt_step_backs), "--json"]
    proc, seconds = runner._exec(argv, env=None, stdin=None, timeout=timeout, cwd=runner.work)
    step = Step(seconds=round(seconds, 2), stderr=_text(proc.stderr))
    if proc.returncode is None:
        step.status, step.detail = "TIMEOUT", f"exceeded {timeout} s"
        return step
    try:
        import json
        report = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        step.status, step.detail = "FAIL", "ttcheck printed no report: " + vmrr_problem(step.stderr)
        return step
    step.status = "ok" if report["ok"] else "FAIL"
    step.detail = report["summary"]
    return step


# -- CPython's regression suite ------------------------------------------------------------

# (module, extra regrtest arguments). Grouped as the brief lists them; cheap ones first.
CPYTHON_MODULES: list[tuple[str, tuple[str, ...]]] = [
    (m, ()) for m in (
        "test_abstract_numbers", "test_numeric_tower", "test_complex", "test_float", "test_int", "test_long",
        "test_math", "test_cmath", "test_struct", "test_decimal", "test_fractions", "test_statistics",
        "test_string", "test_unicode", "test_format", "test_textwrap", "test_bytes", "test_re",
        "test_hash", "test_hashlib", "test_binascii", "test_base64", "test_json", "test_pickle", "test_csv",
        "test_difflib", "test_heapq", "test_bisect", "test_itertools", "test_functools", "test_collections",
        "test_enum", "test_dataclasses", "test_contextlib",
        "test_thread", "test_threading", "test_threading_local", "test_queue",
        "test_select", "test_selectors", "test_epoll", "test_poll")
] + [
    # AF_VSOCK tests hang natively on this kind of host (a Firecracker VM offers vsock)
    ("test_socket", ("-i", "*VSOCK*")),
] + [
    (m, ()) for m in (
        "test_signal", "test_os", "test_posix", "test_time", "test_datetime",
        "test_zlib", "test_lzma", "test_bz2", "test_sqlite3", "test_mmap", "test_fcntl",
        "test_tempfile", "test_shutil", "test_pathlib", "test_asyncio")
]
CPYTHON_TESTS = Path("/usr/lib/python3.11/test")


def cpython_module_installed(module: str) -> bool:
    return (CPYTHON_TESTS / f"{module}.py").is_file() or (CPYTHON_TESTS / module / "__init__.py").is_file()


@dataclass
class ModuleResult:
    """One CPython test module natively and under vmrr, compared case by case."""

    name: str
    steps: dict[str, Step] = field(default_factory=dict)
    verdict: str = ""                                  # unittest_log.summarize of vmrr vs native
    native_summary: str = ""
    only_vmrr_failed: dict[str, str] = field(default_factory=dict)     # test id: error line
    only_vmrr_failed_need_processes: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    native_failed: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def instructions(self) -> int | None:
        step = self.steps.get("record")
        return step.instructions if step else None

    def failures(self) -> list[tuple[str, Step]]:
        return [(mode, step) for mode, step in self.steps.items() if step.status not in ("ok", "-", "skip")]


def check_cpython_module(module: str, extra: tuple[str, ...], runner: Runner, options: CheckOptions,
                         *, timeout: float = 3600, resources: str | None = None,
                         tt_limit: int | None = None) -> ModuleResult:
    """``python3 -m test -v MODULE`` natively and under ``vmrr record``; replays; per-case comparison.

    The record step is "ok" when every test case has the native outcome, "DIFF" when some
    differ (``verdict`` says how, e.g. only tests that need fork), "FAIL" when the run did not
    finish (a crash, a divergence, an error from vmrr) or printed no results. Time travel is
    checked only when the recording ran at most ``tt_limit`` instructions (None: always).
    """
    sys.path.insert(0, str(TOOLS)) if str(TOOLS) not in sys.path else None
    import unittest_log

    result = ModuleResult(module)
    if not cpython_module_installed(module):
        result.steps["native"] = Step("skip", detail=f"{module} is not in {CPYTHON_TESTS} "
                                                     f"(Debian's libpython3.11-testsuite does not ship it)")
        return result
    argv = [PY, "-m", "test", "-v", *(("-u", resources) if resources else ()), *extra, module]
    home = runner.work / "cpython" / module
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    module_runner = Runner(home, runner.vmrr)

    native = module_runner.native(argv, timeout=timeout / 10, cwd=home)
    native_log = unittest_log.parse(_text(native.stdout) + "\n" + native.stderr)
    result.steps["native"] = native
    result.native_summary = _log_tally(native_log)
    if native.status == "ok" and native_log.result is None:
        native.status, native.detail = "FAIL", f"no test results (exit {native.exit_status})"
    elif native.status == "ok" and native_log.failing():
        native.status = "FAIL"
        native.detail = f"fails natively: {', '.join(native_log.failing()[:5])}"
    result.native_failed = {tid: native_log.cases[tid].detail for tid in native_log.failing()}

    trace = runner.work / "traces" / f"{module}.vmrr"
    trace.parent.mkdir(parents=True, exist_ok=True)
    for stale in (trace, Path(f"{trace}.idx"), Path(f"{trace}.incomplete")):
        stale.unlink(missing_ok=True)
    record = module_runner.vmrr_cmd("record", "-o", str(trace), *module_runner.program_options(), "--", *argv,
                                    timeout=timeout, cwd=home)
    result.steps["record"] = record
    missing = enosys_calls(record.stderr)
    if missing:
        result.notes.append(f"ENOSYS: {missing}")
    vmrr_log = unittest_log.parse(_text(record.stdout) + "\n" + guest_stderr(record.stderr))
    cmp = unittest_log.compare(native_log, vmrr_log)
    result.verdict = unittest_log.summarize(native_log, vmrr_log, cmp)
    result.only_vmrr_failed = {tid: case.detail for tid, case in cmp.only_vmrr_failed.items()}
    result.only_vmrr_failed_need_processes = cmp.need_processes()
    result.missing = cmp.missing
    if record.status == "ok":
        if record.exit_status is None or vmrr_log.result is None:
            record.status = "FAIL"
            last = vmrr_log.cases and list(vmrr_log.cases)[-1]
            record.detail = (f"the run did not finish ({len(vmrr_log.cases)} cases reported, last {last}): "
                             f"{vmrr_problem(record.stderr)}")
        elif not cmp.same:
            record.status, record.detail = "DIFF", result.verdict
        else:
            record.detail = result.verdict

    if trace.is_file():
        prog = Program(module, tuple(argv), timeout=timeout / 3)
        for counter in options.counters:
            result.steps[f"replay-{counter}"] = _replay(module_runner, trace, counter, record, prog)
        if options.time_travel and (tt_limit is None or (record.instructions or 0) <= tt_limit):
            result.steps["timetravel"] = time_travel_step(trace, module_runner, options, timeout=timeout * 2)
        elif options.time_travel:
            result.steps["timetravel"] = Step("-", detail=f"not checked: {record.instructions} instructions, "
                                                          f"more than {tt_limit:.0f}")
        if not options.keep_traces:
            for path in (trace, Path(f"{trace}.idx")):
                path.unlink(missing_ok=True)
    shutil.rmtree(home, ignore_errors=True)
    return result


def _log_tally(log) -> str:
    counts = log.counts()
    if not counts:
        return "no results"
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def reset_inherited_signals() -> None:
    """Give SIGINT and SIGQUIT back their default action in the programs we start.

    A shell starts background jobs with SIGINT ignored, and an ignored signal stays ignored
    across exec: CPython's signal tests would then fail natively (or hang). A handled
    signal is reset to the default by exec.
    """
    import threading
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGQUIT) == signal.SIG_IGN:
        signal.signal(signal.SIGQUIT, lambda *_: None)
