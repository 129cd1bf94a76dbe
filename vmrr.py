"""vmrr — record and replay a virtual machine, instruction for instruction.

The command line is a thin layer: each subcommand parses its options, calls one
package (vmm/, recorder/, replay/, tui/) and turns a VmrrError into one line on
stderr and an exit code. Exit codes: 0 success; 1 replay divergence or a failed check;
2 usage or input error; 3 the guest crashed (``run``/``record``).
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import time

from vmm.errors import VmrrError

EXIT_OK, EXIT_CHECK, EXIT_USAGE, EXIT_CRASH = 0, 1, 2, 3
EXIT_INTERNAL = 70                       # a bug: an exception that is not a VmrrError (EX_SOFTWARE)
U64_MAX = (1 << 64) - 1
__version__ = "0.1.0"


def say(message: str) -> None:
    print(f"vmrr: {message}", file=sys.stderr, flush=True)


def _int_arg(text: str, lo: int = 0, hi: int = U64_MAX) -> int:
    try:
        if len(text) > 40:
            raise ValueError
        value = int(text.replace("_", ""), 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text[:40]!r}") from None
    if value < 0 and lo >= 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text}")
    if not lo <= value <= hi:
        raise argparse.ArgumentTypeError(f"{text} is out of range ({lo}..{hi})")
    return value


def _int_range(lo: int, hi: int):
    """An argparse type: a whole number in lo..hi."""
    def parse(text: str) -> int:
        return _int_arg(text, lo, hi)
    parse.__name__ = "number"
    return parse


def _seconds(text: str) -> float:
    """A finite, positive duration in seconds (at most ten years)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text[:40]!r}") from None
    if not math.isfinite(value) or not 0 < value <= 10 * 365 * 86400:
        raise argparse.ArgumentTypeError(f"{text} is not a finite number of seconds above 0")
    return value


def _max_mem_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-mem", metavar="SIZE", default=None,
                   help="refuse traces whose machine has more RAM than this (default: "
                        "min(4G, half of this host's memory))")


def max_mem_of(args) -> int:
    """--max-mem in bytes, or the host's default."""
    from vmm.machine import default_max_mem, parse_mem_size

    if getattr(args, "max_mem", None) is None:
        return default_max_mem()
    return parse_mem_size(args.max_mem, "--max-mem", limit=1 << 40)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):           # usage errors: one line, exit 2
        self.exit(EXIT_USAGE, f"vmrr: error: {message} (see 'vmrr --help')\n")


def _machine_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", metavar="IMAGE", nargs="?",
                   help="built-in appliance (kvstore, kvstore-race, cpubench, ...) or a guest ELF; "
                        "or, after --, a Linux program and its arguments")
    p.add_argument("--listen", metavar="HOST:PORT", help="host address for the socket device, e.g. 127.0.0.1:6380")
    p.add_argument("--mem", metavar="SIZE", default=None,
                   help="guest RAM, e.g. 64M or 1G (default 64M for an appliance, 1G for a Linux program)")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="a Linux program: set this environment variable (repeatable)")
    p.add_argument("--clear-env", action="store_true",
                   help="a Linux program: start from an empty environment instead of vmrr's own")
    p.add_argument("--bind-host", metavar="ADDRESS",
                   help="a Linux program: where its binds to 0.0.0.0 or :: listen on the host "
                        "(default 127.0.0.1 and ::1; 0.0.0.0 opens them to the network)")
    p.add_argument("--args", default="", metavar="STRING", help="boot arguments passed to the guest")
    p.add_argument("--max-instructions", type=_int_arg, metavar="N", help="stop after N instructions")
    p.add_argument("--no-stdin", action="store_true", help="do not forward stdin to the guest console")
    p.add_argument("--console-log", metavar="FILE", help="write the guest console to FILE instead of stdout")
    _counter_option(p)


def _counter_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--counter", choices=("fast", "reference"), default="fast",
                   help="how instructions are counted: fast (whole blocks, the default) or reference "
                        "(one at a time, several times slower: a check on vmrr itself); the icounts are "
                        "the same, and a trace recorded with either replays with either")


def _recover_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recover", action="store_true",
                   help="salvage the complete chunks of a cut or damaged trace (.incomplete files always are)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vmrr", description="Record and replay a virtual machine, instruction for instruction.")
    parser.add_argument("--version", action="version", version=f"vmrr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    linux_epilog = ("A Linux program: put it and its arguments after --, e.g. "
                    "'%(prog)s -- /usr/bin/python3 -c \"print(1)\"' (docs/linux.md); a #! script "
                    "and the processes it starts are recorded too. The first SIGINT/SIGTERM goes "
                    "to the program (a second one stops), SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and "
                    "SIGWINCH always do (under record --ring, SIGUSR1 saves the flight recorder's window "
                    "instead).")
    p = sub.add_parser("run", help="run a guest (an appliance, or a Linux program after --) without recording",
                       epilog=linux_epilog)
    _machine_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("record", help="run a guest (an appliance, or a Linux program after --) and record "
                                      "everything it receives into a trace", epilog=linux_epilog)
    _machine_options(p)
    p.add_argument("-o", "--output", required=True, metavar="TRACE", help="trace file to create")
    p.add_argument("--duration", type=_seconds, metavar="SECONDS", help="stop recording after this long")
    p.add_argument("--chaos", nargs="?", const=-1, type=_int_arg, metavar="SEED",
                   help="perturb interrupt timing, or a Linux program's thread switches (rare interleavings "
                        "become common); random seed if none given")
    p.add_argument("--checkpoint-every", type=_int_range(1, 1 << 62), metavar="N",
                   help="instructions between checkpoints")
    p.add_argument("--digest-every", type=_int_range(1, 1 << 62), metavar="N",
                   help="instructions between state digests (there is also one per second)")
    p.add_argument("--force", action="store_true", help="overwrite TRACE if it exists")
    p.add_argument("--ring", metavar="DURATION|SIZE",
                   help="flight recorder: keep only the last DURATION (10m, 90s, 1h) or SIZE (2G, 500M) "
                        "of the run, in TRACE.ring/; TRACE is written when the program crashes or exits "
                        "non-zero, and 'kill -USR1 PID' or 'vmrr save PID -o FILE' save the window while "
                        "the recording goes on (docs/flight-recorder.md)")
    p.add_argument("--save-on-output", metavar="REGEX",
                   help="with --ring: save the window when the program's output matches REGEX")
    p.add_argument("--save-on-exit", action="store_true",
                   help="with --ring: save the window to TRACE however the run ends")
    p.set_defaults(func=cmd_record)

    p = sub.add_parser("save", help="save a flight recorder's window (vmrr record --ring) as a trace")
    p.add_argument("pid", metavar="PID", nargs="?", type=_int_range(1, (1 << 31) - 1),
                   help="the process id of the running 'vmrr record --ring'")
    p.add_argument("-o", "--output", required=True, metavar="TRACE", help="trace file to create")
    p.add_argument("--from-ring", metavar="DIR",
                   help="instead of asking a running recorder, join the segments a ring directory "
                        "holds (a recorder that was killed)")
    p.add_argument("--force", action="store_true", help="overwrite TRACE if it exists")
    p.set_defaults(func=cmd_save)

    p = sub.add_parser("replay", help="replay a trace, with no host I/O")
    p.add_argument("trace", metavar="TRACE")
    p.add_argument("--verify", action="store_true", help="check every state digest and the final state")
    p.add_argument("--until", type=_int_arg, metavar="ICOUNT", help="stop at this instruction count")
    p.add_argument("--quiet", action="store_true", help="do not reproduce the guest console")
    _counter_option(p)
    _recover_option(p)
    _max_mem_option(p)
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("demo", help="record the kvstore appliance under real clients, then replay and verify it")
    p.add_argument("-o", "--output", default="vmrr-demo.vmrr", metavar="TRACE", help="trace to write (default vmrr-demo.vmrr)")
    p.add_argument("--requests", type=_int_range(1, 10**9), default=5000, metavar="N", help="requests per client run (default 5000)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("info", help="describe a trace: machine, run, events")
    p.add_argument("trace", metavar="TRACE")
    p.add_argument("--json", action="store_true", help="print JSON")
    _recover_option(p)
    _max_mem_option(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("ps", help="a Linux program's processes: pid, parent, exit, icounts, command (like rr ps)")
    p.add_argument("trace", metavar="TRACE")
    p.add_argument("--json", action="store_true", help="one JSON object per process and line")
    _recover_option(p)
    p.set_defaults(func=cmd_ps)

    p = sub.add_parser("events", help="list a trace's events, one JSON object per line with --json")
    p.add_argument("trace", metavar="TRACE")
    p.add_argument("--kind", action="append", metavar="KIND",
                   help="only these kinds (repeatable or comma-separated), e.g. SOCK_DATA,CONSOLE_IN")
    p.add_argument("--syscall", action="append", metavar="NAME[,NAME...]",
                   help="only these system calls of a Linux program (implies --kind SYSCALL)")
    p.add_argument("--pid", action="append", metavar="PID[,PID...]",
                   help="only the system calls and signals of these processes' threads (repeatable; "
                        "'vmrr ps TRACE' lists them)")
    p.add_argument("-s", "--string-limit", type=_int_arg, default=32, metavar="N",
                   help="bytes of data to show before '...' (default 32, as strace; 0: all)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    _recover_option(p)
    p.set_defaults(func=cmd_events)

    p = sub.add_parser("gdbserver", help="serve a trace to gdb (target remote HOST:PORT), reverse execution included")
    p.add_argument("trace", metavar="TRACE")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=_int_range(0, 65535), default=1234,
                   help="TCP port (default 1234; 0 picks a free one)")
    _max_mem_option(p)
    p.add_argument("--at", default="start", metavar="POSITION",
                   help="where gdb finds the guest: start (default), end, crash, or an icount")
    p.set_defaults(func=cmd_gdbserver)

    p = sub.add_parser("tui", help="terminal debugger: open a trace at its crash, step forward and backward")
    p.add_argument("trace", metavar="TRACE")
    _max_mem_option(p)
    p.set_defaults(func=cmd_tui)
    return parser


def load_guest(args):
    """IMAGE, or the Linux program after --, and the machine options → (image, mem_size, listen)."""
    import os

    from vmm.errors import UsageError
    from vmm.hostio import parse_listen
    from vmm.loader import load_image
    from vmm.machine import parse_mem_size

    program = getattr(args, "program", None)
    if program and args.image:
        raise UsageError(f"give an IMAGE or a program after --, not both ({args.image!r} and {program[0]!r})")
    if program is not None and not program:
        raise UsageError("no program after --")
    if not program and not args.image:
        raise UsageError("give an IMAGE, or a Linux program after --: vmrr run -- /bin/ls -l")
    listen = parse_listen(args.listen) if args.listen else None
    if program:
        from vmm.linux.program import LinuxProgram
        if listen is not None:
            raise UsageError("--listen is for appliances; a Linux program opens its own sockets")
        env = {} if args.clear_env else dict(os.environ)
        for item in args.env:
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise UsageError(f"--env {item}: expected NAME=VALUE")
            env[name] = value
        if args.bind_host is not None:
            import ipaddress
            try:
                ipaddress.ip_address(args.bind_host)
            except ValueError:
                raise UsageError(f"--bind-host {args.bind_host}: not an IP address (e.g. 0.0.0.0)") from None
        image = LinuxProgram.from_host(program, [f"{k}={v}" for k, v in env.items()])
        return image, parse_mem_size("1G" if args.mem is None else args.mem), None
    if args.env or args.clear_env or args.bind_host:
        raise UsageError("--env, --clear-env and --bind-host are for a Linux program (after --)")
    return load_image(args.image), parse_mem_size("64M" if args.mem is None else args.mem), listen


def build_machine(args):
    """IMAGE and machine options → (Machine, listen address)."""
    from vmm.machine import Machine

    image, mem_size, listen = load_guest(args)
    return Machine(image, mem_size=mem_size, boot_args=args.args, counter=args.counter), listen


def install_interrupt_handler(machine) -> None:
    """First Ctrl-C (or SIGTERM) stops the machine cleanly; a second one aborts.

    A Linux program gets the first signal itself, at the next slice boundary, and ends
    its own way (redis saves and exits); the second stops the machine at once. Either
    way the trace is finalized."""
    given = []

    def handler(signum, _frame):
        if machine._shutdown_reason is not None:
            raise KeyboardInterrupt
        deliver = getattr(machine.boundary, "signal_from_outside", None)
        if machine.kernel is not None and not given and deliver is not None:
            given.append(signum)
            deliver(int(signum))
            return
        machine.request_shutdown("interrupted" if signum == signal.SIGINT else "terminated")
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    deliver = getattr(machine.boundary, "signal_from_outside", None)
    if machine.kernel is not None and deliver is not None:
        # What a server is told by its operator goes to it, every time: SIGHUP (reload),
        # SIGQUIT (nginx: a graceful stop), SIGUSR1/2 (reopen logs, ...), SIGWINCH.
        for signo in FORWARDED_SIGNALS:
            signal.signal(signo, lambda signum, _frame: deliver(int(signum)))


FORWARDED_SIGNALS = (signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH)


def report_result(result, seconds: float) -> int:
    """Print how the run ended; return the exit code."""
    from vmm.machine import Outcome

    speed = f"{result.icount} instructions in {seconds:.2f} s"
    if result.outcome is Outcome.CRASH:
        print(result.crash.format(), file=sys.stderr)
        return EXIT_CRASH
    if result.outcome is Outcome.POWER_OFF:
        if getattr(result, "why", "") and result.why.startswith("terminated by signal"):
            say(f"program {result.why} after {speed}")
        else:
            say(f"{'program exited' if result.why == 'exit' else 'guest powered off'} with status "
                f"{result.exit_status} after {speed}")
        return EXIT_OK if result.exit_status == 0 else EXIT_CHECK
    say(f"stopped ({result.why}) after {speed}")
    return EXIT_OK


def console_stream(args):
    """Where the guest console goes: stdout, or the --console-log file."""
    if not args.console_log:
        return sys.stdout.buffer
    from trace_format.safefile import SymlinkRefused, open_append
    from vmm.errors import HostError
    try:
        return os.fdopen(open_append(args.console_log), "ab")
    except SymlinkRefused as exc:
        raise HostError(f"--console-log {exc}") from None
    except OSError as exc:
        raise HostError(f"--console-log {args.console_log}: {exc.strerror}") from None


def cmd_run(args) -> int:
    from vmm.boundary import LiveBoundary

    machine, listen = build_machine(args)
    boundary = LiveBoundary(machine, listen=listen, console_input=not args.no_stdin,
                            console_output=console_stream(args))
    boundary.bind_host = args.bind_host or boundary.bind_host
    machine.connect(boundary)
    install_interrupt_handler(machine)         # before "listening on": clients may signal at once
    if boundary.listen_address:
        host, port = boundary.listen_address
        say(f"listening on {host}:{port}")
    start = time.perf_counter()
    try:
        result = machine.run(max_instructions=args.max_instructions)
    finally:
        boundary.close()
    return report_result(result, time.perf_counter() - start)


def cmd_record(args) -> int:
    import os
    import random

    from recorder import RecordSession
    from recorder.session import DEFAULT_CHECKPOINT_EVERY, DEFAULT_DIGEST_EVERY

    output = os.fspath(args.output)
    if os.path.isdir(output):
        from vmm.errors import UsageError
        raise UsageError(f"-o {output}: is a directory; name the trace file to create")
    ring_bound, pattern = _ring_options(args, output)
    image, mem_size, listen = load_guest(args)
    seed = args.chaos
    if seed == -1:
        seed = random.SystemRandom().randrange(1 << 32)
    ring = None
    if ring_bound is not None:
        from recorder.ring import Ring
        ring = Ring(output + ".ring", ring_bound, tool_version=__version__, report=say)
    try:
        session = RecordSession(image, args.output, mem_size=mem_size, boot_args=args.args, listen=listen,
                                chaos_seed=seed, console_output=console_stream(args),
                                console_input=not args.no_stdin, overwrite=args.force,
                                checkpoint_every=args.checkpoint_every or DEFAULT_CHECKPOINT_EVERY,
                                digest_every=args.digest_every or DEFAULT_DIGEST_EVERY,
                                tool_version=__version__, counter=args.counter, ring=ring,
                                save_on_output=pattern, save_on_exit=args.save_on_exit)
    except BaseException:
        if ring is not None:
            ring.close(keep=False)
        raise
    session.boundary.bind_host = args.bind_host or session.boundary.bind_host
    install_interrupt_handler(session.machine)  # before "listening on": clients may signal at once
    control = None
    if ring is not None:
        from recorder.control import ControlServer
        # SIGUSR1 is the recorder's under --ring (it saves the window), not the program's.
        signal.signal(signal.SIGUSR1, lambda _signum, _frame: session.request_save("sigusr1"))
        try:
            control = ControlServer(session)
        except VmrrError:
            ring.close(keep=False)
            session.boundary.close()
            raise
        say(f"flight recorder: keeping {ring_bound.describe()} in {ring.directory}; save it with "
            f"'kill -USR1 {os.getpid()}' or 'vmrr save {os.getpid()} -o FILE'")
    if session.boundary.listen_address:
        host, port = session.boundary.listen_address
        say(f"listening on {host}:{port}")
    if seed is not None:
        say(f"chaos mode, seed {seed}")
    say(f"recording to {args.output}")
    if getattr(args, "program", None) and not args.clear_env:
        say(f"the trace keeps this environment whole ({len(image.env)} variables, tokens and keys "
            f"included) and every file the program reads: share it with care (--clear-env, --env NAME=VALUE)")
    try:
        summary = session.run(duration=args.duration, max_instructions=args.max_instructions)
    finally:
        if control is not None:
            control.close()
    code = report_result(summary.result, summary.wall_seconds)
    for line in summary.lines():
        say(line)
    if code == EXIT_CRASH and os.path.exists(output):
        say(f"the crash was captured {'in the window' if ring else 'in full'}: "
            f"vmrr replay {output} --verify")
    return code


def _ring_options(args, output: str):
    """--ring, --save-on-output, --save-on-exit → (RingBound or None, compiled pattern or None)."""
    import re

    from vmm.errors import UsageError
    if args.ring is None:
        if args.save_on_output is not None or args.save_on_exit:
            raise UsageError("--save-on-output and --save-on-exit are for a flight recorder (--ring)")
        return None, None
    from recorder.ring import parse_ring
    bound = parse_ring(args.ring)
    if os.path.lexists(output) and not args.force:
        raise UsageError(f"-o {output}: a trace already exists there (the window of a crash goes "
                         f"there); use --force to replace it")
    pattern = None
    if args.save_on_output is not None:
        try:
            pattern = re.compile(os.fsencode(args.save_on_output))
        except re.error as exc:
            raise UsageError(f"--save-on-output {args.save_on_output!r}: not a regular expression ({exc})") from None
    return bound, pattern


def cmd_save(args) -> int:
    """Save a flight recorder's window: ask the running recorder, or join a ring directory."""
    from vmm.errors import UsageError

    if args.from_ring is not None:
        if args.pid is not None:
            raise UsageError("give a PID or --from-ring DIR, not both")
        from recorder.ring import save_from_ring
        start = time.perf_counter()
        stats = save_from_ring(args.from_ring, args.output, tool_version=__version__, overwrite=args.force)
        say(f"saved {args.output}: icount {stats.start_icount} to {stats.end_icount} from "
            f"{stats.sources} segments, {stats.bytes} bytes, in {time.perf_counter() - start:.2f} s")
        return EXIT_OK
    if args.pid is None:
        raise UsageError("give the PID of a running 'vmrr record --ring', or --from-ring DIR")
    from recorder.control import ask_save
    answer = ask_save(args.pid, args.output, force=args.force)
    if not answer.get("ok"):
        say(f"error: the recorder could not save: {answer.get('error')}")
        return EXIT_USAGE
    say(f"saved {answer.get('path')}: icount {answer.get('start_icount')} to {answer.get('end_icount')}, "
        f"{answer.get('history_seconds', 0):.1f} s of history, {answer.get('bytes')} bytes, "
        f"in {answer.get('seconds')} s")
    return EXIT_OK


def cmd_replay(args) -> int:
    from replay import Replay
    from vmm.machine import Outcome

    out = None if args.quiet else sys.stdout.buffer
    with Replay(args.trace, verify=args.verify, console_output=out, recover=args.recover,
                max_mem=max_mem_of(args), counter=args.counter) as rep:
        install_interrupt_handler(rep.machine)
        start = time.perf_counter()
        report = rep.run(until=args.until)
        seconds = time.perf_counter() - start
    result = report.result
    if result.outcome is Outcome.CRASH:
        print(result.crash.format(), file=sys.stderr)
    elif result.outcome is Outcome.POWER_OFF:
        if rep.machine.kernel is not None:
            say(f"program {result.why if result.why.startswith('terminated') else 'exited'} with status "
                f"{result.exit_status}")
        else:
            say(f"guest powered off with status {result.exit_status}")
    else:
        say(f"replay stopped: {result.why}")
    first = rep.first_icount
    span = f" (icount {first} to {result.icount})" if rep.reader.window is not None else ""
    say(f"replayed {result.icount - first} instructions{span} in {seconds:.2f} s")
    if args.verify:
        say(f"verified: {report.digests_checked} state digests, "
            f"{report.checkpoints_checked} checkpoints")
        for line in report.checks:
            say(f"verified: {line}")
    # The replayed run ends as the recorded one did, exit code included (as `run` and
    # `record` report it): a program that exited non-zero or was killed is 1, a crash 3.
    if result.outcome is Outcome.CRASH:
        return EXIT_CRASH
    if result.outcome is Outcome.POWER_OFF and result.exit_status != 0:
        return EXIT_CHECK
    return EXIT_OK


def cmd_demo(args) -> int:
    """The main job end to end: a server recorded under real TCP clients, replayed, verified."""
    import demo

    return demo.run_demo(args.output, args.requests, say)


def _open_reader(path: str, recover: bool = False):
    from trace_format import TraceReader

    return TraceReader(path, recover=recover)


def trace_info(reader, max_mem: int | None = None) -> dict:
    h = reader.header
    c = h.config
    return {
        "path": reader.path,
        "format_version": h.format_version, "tool_version": h.tool_version,
        "created_unix": h.created_unix, "flags": h.flags,
        "machine": {"mem_size": c.mem_size, "cpu_model": c.cpu_model, "boot_args": c.boot_args,
                    "devices": c.devices, "image": c.image_name, "image_sha256": c.image_sha256,
                    "image_bytes": len(c.image)},
        "complete": reader.complete,
        "instructions": reader.last_icount if not reader.end else reader.end.get("icount", reader.last_icount),
        "events": {k.name: n for k, n in sorted(reader.event_counts.items())},
        "checkpoints": len(reader.checkpoints),
        "window": reader.window,
        "file_bytes": reader.file_size,
        "end": {k: v for k, v in (reader.end or {}).items() if k not in ("digest", "report", "linux")} or None,
        **({"linux": _linux_info(reader)} if "linux" in c.devices else {}),
        "fits_max_mem": None if max_mem is None else c.mem_size <= max_mem,
    }


def _linux_info(reader) -> dict:
    """What a Linux program's trace holds: how it was started, the files it read, its system calls."""
    from collections import Counter

    from replay.pstree import EVENT_KINDS, TreeBuilder, as_json, checked_summary, first_ppid, from_events, \
        from_summary, linux_program
    from trace_format.events import EventKind
    from vmm.linux.syscalls import describe

    # The same checks replay makes, before anything is printed.
    program = linux_program(reader)
    info = {"argv": program.argv, "cwd": program.cwd, "environment": len(program.env),
            "environment_names": [entry.partition("=")[0] for entry in program.env],
            "interpreter": program.interp.path if program.interp is not None else None}
    summary = checked_summary(reader)
    if summary is not None:
        info.update({k: summary.get(k) for k in ("syscalls", "unimplemented", "files", "libraries", "peers")})
        tree = from_summary(summary)
        if tree is None:                    # recorded before vmrr listed the processes
            tree = from_events(reader.events(kinds=EVENT_KINDS), program.argv, program.exe.path,
                               first_ppid(program))
    else:
        # A killed recording has no summary: count from the events, rebuild the processes.
        calls, blobs = Counter(), 0
        builder = TreeBuilder(program.argv, program.exe.path, first_ppid(program))
        for event in reader.events(kinds=EVENT_KINDS | {EventKind.BLOB}):
            if event.kind == EventKind.BLOB:
                if isinstance(event.payload, list) and len(event.payload) == 4:
                    blobs += len(event.payload[3]) if isinstance(event.payload[3], bytes) else 0
                continue
            builder.feed(event)
            if event.kind == EventKind.SYSCALL and isinstance(event.payload, list) and len(event.payload) == 5 \
                    and isinstance(event.payload[1], int):
                calls[describe(event.payload[1])] += 1
        info.update({"syscalls": dict(calls.most_common()), "unimplemented": None, "files": None,
                     "file_bytes": blobs})
        tree = builder.tree()
    info.update({"processes": [as_json(p, tree.rebuilt) for p in tree.processes],
                 "processes_rebuilt": tree.rebuilt, "processes_omitted": tree.omitted})
    return info


def cmd_info(args) -> int:
    import json

    max_mem = max_mem_of(args)
    with _open_reader(args.trace, args.recover) as reader:
        info = trace_info(reader, max_mem)
    if args.json:
        print(json.dumps(jsonable(info)))
        return EXIT_OK
    m, end = info["machine"], info["end"]
    print(f"trace       {args.trace} ({info['file_bytes']} bytes, format {info['format_version']}, "
          f"vmrr {info['tool_version']})")
    flags = info["flags"]
    print(f"recorded    {_local_time(info['created_unix'])}"
          + (f", chaos seed {flags['chaos_seed']}" if "chaos_seed" in flags else "")
          + (f", {flags['counter']} counter" if flags.get("counter") in ("fast", "reference") else ""))
    print(f"machine     {m['image']} ({m['image_bytes']} bytes, sha256 {m['image_sha256'][:16]}), "
          f"{m['mem_size'] >> 20} MiB, cpu {m['cpu_model']}, args {m['boot_args']!r}")
    if not info["fits_max_mem"]:
        print(f"            more RAM than --max-mem ({max_mem} bytes): replaying it needs a larger --max-mem")
    if "linux" in info:
        _print_linux_info(info["linux"])
    if info["window"] is not None:
        _print_window(info["window"], info["instructions"])
    print(f"run         {info['instructions']} instructions, {info['checkpoints']} checkpoints")
    print("events      " + (", ".join(f"{k} {n}" for k, n in info["events"].items()) or "none"))
    if end is None:
        print("ended       unknown: the trace is incomplete (recorder killed); replay recovers every complete chunk")
    elif end.get("reason") == "crash":
        where = ""
        if isinstance(end.get("pid"), int) and isinstance(end.get("program"), str):
            from replay.pstree import printable
            where = f" in process {end['pid']} ({printable(end['program'])})"
        print(f"ended       crash: {end.get('kind')} vector {end.get('vector')} at rip {end.get('rip'):#x}, "
              f"icount {end.get('icount')}{where}")
    elif end.get("reason") == "poweroff" and "linux" in info:
        how = end.get("why") if str(end.get("why", "")).startswith("terminated") else "exited"
        print(f"ended       {how}, status {end.get('exit_status')}, icount {end.get('icount')}")
    elif end.get("reason") == "poweroff":
        print(f"ended       power-off, status {end.get('exit_status')}, icount {end.get('icount')}")
    else:
        print(f"ended       stopped ({end.get('why')}) at icount {end.get('icount')}")
    return EXIT_OK


def _print_window(window: dict, end_icount: int) -> None:
    """A flight recorder's window: where it starts and ends, why it was saved, what went before."""
    start, end = window["start_icount"], window.get("end_icount", end_icount)
    when = ""
    if isinstance(window.get("start_unix"), (int, float)) and isinstance(window.get("end_unix"), (int, float)):
        when = (f" ({_local_time(window['start_unix'])} to {_local_time(window['end_unix'])}, "
                f"{window['end_unix'] - window['start_unix']:.1f} s)")
    print(f"window      icount {start} to {end}{when}: a flight recorder's window, replay starts at its first checkpoint")
    trigger = window.get("trigger")
    why = "a segment of a flight recorder's ring" if trigger == "segment" else f"saved on {trigger}"
    dropped = ""
    if isinstance(window.get("dropped_segments"), int):
        dropped = (f"; {window['dropped_segments']} segments ({window.get('dropped_bytes', 0)} bytes, "
                   f"{window.get('dropped_seconds', 0.0):.1f} s of the run) dropped before it")
    elif start > 0:
        dropped = f"; the {start} instructions before it are not in this trace"
    print(f"            {why}{dropped}")


def _local_time(unix: float) -> str:
    try:
        return time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(unix))
    except (OverflowError, OSError, ValueError):
        return f"unix time {unix!r} (not a date this host can show)"


def jsonable(value: object) -> object:
    """``value`` with bytes as hex strings and every map key a string: what json.dumps takes."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {k if isinstance(k, str) else str(jsonable(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _print_linux_info(linux: dict) -> None:
    import shlex

    argv = linux.get("argv") or []
    print(f"program     {shlex.join(str(a) for a in argv)}")
    print(f"            cwd {linux.get('cwd')}, interpreter {linux.get('interpreter') or 'none (static)'}")
    names = linux.get("environment_names") or []
    print(f"environment {len(names)} variables, values in the trace: {' '.join(names) or 'none'}")
    libraries = linux.get("libraries")
    if libraries:
        print(f"libraries   {', '.join(str(p) for p in libraries[1:]) or 'none'}")
    files = linux.get("files")
    if files is not None:
        total = sum(f[2] for f in files if isinstance(f, list) and len(f) == 3 and isinstance(f[2], int))
        print(f"files       {len(files)} read and captured ({total} bytes, each content stored once)")
        for entry in files:
            if isinstance(entry, list) and len(entry) == 3:
                print(f"              {entry[0]} ({entry[2]} bytes, sha256 {str(entry[1])[:16]})")
    calls = linux.get("syscalls") or {}
    if isinstance(calls, dict):
        print(f"syscalls    {sum(n for n in calls.values() if isinstance(n, int))}: "
              + ", ".join(f"{k} {n}" for k, n in list(calls.items())[:16]))
    processes = linux.get("processes")
    if processes is not None:
        from replay.pstree import counts_text
        print(f"processes   {counts_text(processes, linux.get('processes_rebuilt'), linux.get('processes_omitted', 0))}"
              + ("; vmrr ps lists them" if len(processes) > 1 else ""))
    unimplemented = linux.get("unimplemented")
    if unimplemented:
        print("unimplemented  " + ", ".join(f"{k} x{n}" for k, n in unimplemented.items()) + " (returned ENOSYS)")
    peers = linux.get("peers")
    if peers:
        print("network     heard from " + ", ".join(f"{host} ({n})" for host, n in list(peers.items())[:20])
              + (f" and {len(peers) - 20} more" if len(peers) > 20 else ""))


def _stdout_gone() -> None:
    """`vmrr ... | head`: the reader left. Point stdout at /dev/null so the interpreter's
    last flush has nowhere to fail."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def cmd_ps(args) -> int:
    import json

    from replay.pstree import as_json, process_tree, table

    with _open_reader(args.trace, args.recover) as reader:
        tree = process_tree(reader)
        ended = reader.end is not None
    if tree.rebuilt:
        why = ("the trace has no END record (a killed or cut recording)" if not ended
               else "the trace's END record lists no processes (recorded by an older vmrr)")
        say(f"{why}: the process tree is rebuilt from its events; '?' marks what they do not tell")
    try:
        if args.json:
            for proc in tree.processes:
                print(json.dumps(as_json(proc, tree.rebuilt)))
        else:
            for line in table(tree):
                print(line)
        sys.stdout.flush()
    except BrokenPipeError:
        _stdout_gone()
        return EXIT_OK
    if tree.omitted:
        say(f"{tree.omitted} more processes ran: the trace's list is bounded and leaves out the last to start")
    return EXIT_OK


def _pid_filter(args, reader, names) -> tuple[set[int], int]:
    """--pid: (the thread ids of those processes, the first process's pid)."""
    from replay.pstree import process_tree, thread_owners
    from vmm.errors import UsageError

    wanted = []
    for text in names(args.pid):
        if not text.isdigit() or len(text) > 10:
            raise UsageError(f"--pid {text[:40]}: not a process id (vmrr ps TRACE lists them)")
        wanted.append(int(text))
    tree = process_tree(reader)
    known = tree.by_pid()
    for pid in wanted:
        if pid not in known:
            listed = ", ".join(str(p) for p in list(known)[:20]) + (", ..." if len(known) > 20 else "")
            raise UsageError(f"--pid {pid}: {reader.path} has no process {pid} (it has {listed or 'none'})")
    owners = thread_owners(reader, tree)
    return {tid for tid, pid in owners.items() if pid in wanted}, tree.first.pid


def _first_pid(reader) -> int | None:
    """The first process's pid from a well-formed END summary (its main thread's calls get no
    ``[pid N]``), or None."""
    from vmm.linux.checks import summary_problem

    summary = (reader.end or {}).get("linux")
    if summary is None or summary_problem(summary) is not None or not summary.get("processes"):
        return None
    return min(summary["processes"], key=lambda row: (row["start_icount"], row["pid"]))["pid"]


def _event_json(event, string_limit: int) -> dict:
    from replay.render import event_to_json

    return event_to_json(event, string_limit=string_limit)


def cmd_events(args) -> int:
    import json

    from replay.render import render_event, syscall_numbers_named
    from trace_format.events import EventKind
    from vmm.errors import UsageError

    def names(values):                  # --kind a --kind b,c -> [a, b, c]
        return [n.strip() for value in values or () for n in value.split(",") if n.strip()]

    kinds = None
    if args.kind:
        try:
            kinds = {EventKind[k.upper()] for k in names(args.kind)}
        except KeyError as exc:
            known = ", ".join(k.name for k in EventKind)
            raise UsageError(f"--kind {exc.args[0]}: unknown event kind (one of {known})") from None
    syscalls = None
    if args.syscall:
        try:
            syscalls = syscall_numbers_named(names(args.syscall))
        except KeyError as exc:
            raise UsageError(f"--syscall {exc.args[0]}: unknown system call") from None
        kinds = (kinds or set()) | {EventKind.SYSCALL}
    threads = None
    if args.pid:
        thread_kinds = {EventKind.SYSCALL, EventKind.SIGNAL}
        if kinds is not None and not kinds & thread_kinds:
            raise UsageError("--pid shows only SYSCALL and SIGNAL events (the threads' own)")
        kinds = (kinds or thread_kinds) & thread_kinds
    main_tid = None                     # the first process's main thread; others get strace -f's [pid N]
    try:
        with _open_reader(args.trace, args.recover) as reader:
            if args.pid:
                threads, main_tid = _pid_filter(args, reader, names)
            elif reader.end is not None:
                main_tid = _first_pid(reader)
            for event in reader.events(kinds=kinds):
                if event.kind in (EventKind.SYSCALL, EventKind.SIGNAL) and isinstance(event.payload, list):
                    if main_tid is None and event.payload:
                        main_tid = event.payload[0]
                    if threads is not None and (not event.payload or event.payload[0] not in threads):
                        continue
                    if syscalls is not None and event.kind is EventKind.SYSCALL \
                            and (len(event.payload) < 2 or event.payload[1] not in syscalls):
                        continue
                elif threads is not None:
                    continue
                if args.json:
                    line = json.dumps(_event_json(event, args.string_limit))
                else:
                    text = render_event(event, string_limit=args.string_limit, main_tid=main_tid)
                    line = f"{event.icount:>14}  {event.kind.name:<12} {text}"
                print(line)
            sys.stdout.flush()
    except BrokenPipeError:
        _stdout_gone()                  # `vmrr events T | head`: stop quietly
    return EXIT_OK


def cmd_gdbserver(args) -> int:
    from gdbstub.server import GdbServer, bind_listener
    from replay.timetravel import TimeTravel
    from vmm.errors import UsageError

    at = args.at.lower()
    if at not in ("start", "end", "crash"):
        try:
            at = _int_arg(at)
        except argparse.ArgumentTypeError as exc:
            raise UsageError(f"--at: {exc}") from None
    max_mem = max_mem_of(args)
    listener = bind_listener(args.host, args.port)      # a busy port fails before the replay
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        tt = TimeTravel(args.trace, max_mem=max_mem)
    except BaseException:
        listener.close()
        raise
    if tt.sidecar_problem:
        say(f"warning: {tt.sidecar_problem}")
    try:
        if at == "end":
            tt.goto_end()
        elif at == "crash":
            tt.goto_crash()
        elif at != "start":
            tt.seek(at)
        with GdbServer(tt, listener=listener) as server:
            host, port = server.address
            say(f"gdbserver listening on {host}:{port} (trace {args.trace}, icount {tt.icount})")
            server.serve_forever()
    except KeyboardInterrupt:
        say("gdbserver stopped")
    finally:
        tt.close()
    return EXIT_OK


def cmd_tui(args) -> int:
    from tui import run_tui

    return run_tui(args.trace, max_mem=max_mem_of(args))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    for stream in (sys.stdout, sys.stderr):     # a program's non-UTF-8 names, shown escaped
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    program = None
    if "--" in argv and argv[:1] in (["run"], ["record"]):
        at = argv.index("--")
        argv, program = argv[:at], argv[at + 1:]
    args = build_parser().parse_args(argv)
    args.program = program
    try:
        return args.func(args)
    except VmrrError as exc:
        say(f"error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        say("aborted")
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except MemoryError:
        say("error: out of memory (try a smaller --max-mem, or a host with more RAM)")
        return EXIT_INTERNAL
    except Exception as exc:                 # a bug: say so in one line, never a traceback
        import traceback
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        say(f"internal error: {type(exc).__name__}: {exc} (at {frame.filename}:{frame.lineno}); "
            f"please report it")
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
