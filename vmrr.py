"""vmrr — record and replay a virtual machine, instruction for instruction.

The command line is a thin layer: each subcommand parses its options, calls one
package (vmm/, recorder/, replay/, tui/) and turns a VmrrError into one line on
stderr and an exit code. Exit codes: 0 success; 1 replay divergence or a failed check;
2 usage or input error; 3 the guest crashed (``run``/``record``).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

from vmm.errors import VmrrError

EXIT_OK, EXIT_CHECK, EXIT_USAGE, EXIT_CRASH = 0, 1, 2, 3
__version__ = "0.1.0"


def say(message: str) -> None:
    print(f"vmrr: {message}", file=sys.stderr, flush=True)


def _int_arg(text: str) -> int:
    try:
        value = int(text.replace("_", ""), 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text}")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):           # usage errors: one line, exit 2
        self.exit(EXIT_USAGE, f"vmrr: error: {message} (see 'vmrr --help')\n")


def _machine_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", metavar="IMAGE", help="built-in appliance (kvstore, kvstore-race, cpubench, ...) or a guest ELF")
    p.add_argument("--listen", metavar="HOST:PORT", help="host address for the socket device, e.g. 127.0.0.1:6380")
    p.add_argument("--mem", metavar="SIZE", default="64M", help="guest RAM, e.g. 64M or 1G (default 64M)")
    p.add_argument("--args", default="", metavar="STRING", help="boot arguments passed to the guest")
    p.add_argument("--max-instructions", type=_int_arg, metavar="N", help="stop after N instructions")
    p.add_argument("--no-stdin", action="store_true", help="do not forward stdin to the guest console")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vmrr", description="Record and replay a virtual machine, instruction for instruction.")
    parser.add_argument("--version", action="version", version=f"vmrr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    p = sub.add_parser("run", help="run a guest without recording")
    _machine_options(p)
    p.set_defaults(func=cmd_run)
    return parser


def build_machine(args):
    """IMAGE and machine options → (Machine, listen address)."""
    from vmm.hostio import parse_listen
    from vmm.loader import load_image
    from vmm.machine import Machine, parse_mem_size

    mem_size = parse_mem_size(args.mem)
    listen = parse_listen(args.listen) if args.listen else None
    image = load_image(args.image)
    return Machine(image, mem_size=mem_size, boot_args=args.args), listen


def install_interrupt_handler(machine) -> None:
    """First Ctrl-C (or SIGTERM) stops the machine cleanly; a second one aborts."""
    def handler(signum, _frame):
        if machine._shutdown_reason is not None:
            raise KeyboardInterrupt
        machine.request_shutdown("interrupted" if signum == signal.SIGINT else "terminated")
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def report_result(result, seconds: float) -> int:
    """Print how the run ended; return the exit code."""
    from vmm.machine import Outcome

    speed = f"{result.icount} instructions in {seconds:.2f} s"
    if result.outcome is Outcome.CRASH:
        print(result.crash.format(), file=sys.stderr)
        return EXIT_CRASH
    if result.outcome is Outcome.POWER_OFF:
        say(f"guest powered off with status {result.exit_status} after {speed}")
        return EXIT_OK if result.exit_status == 0 else EXIT_CHECK
    say(f"stopped ({result.why}) after {speed}")
    return EXIT_OK


def cmd_run(args) -> int:
    from vmm.boundary import LiveBoundary

    machine, listen = build_machine(args)
    boundary = LiveBoundary(machine, listen=listen, console_input=not args.no_stdin,
                            console_output=sys.stdout.buffer)
    machine.connect(boundary)
    if boundary.listen_address:
        host, port = boundary.listen_address
        say(f"listening on {host}:{port}")
    install_interrupt_handler(machine)
    start = time.perf_counter()
    try:
        result = machine.run(max_instructions=args.max_instructions)
    finally:
        boundary.close()
    return report_result(result, time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
