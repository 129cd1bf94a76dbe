"""Summarise a py-spy raw profile (``py-spy record --native --format raw``) as text.

    py-spy record --native --rate 250 --format raw -o prof.txt -- .venv/bin/python vmrr.py record ...
    .venv/bin/python bench/pyspy_summary.py prof.txt                      # self and inclusive
    .venv/bin/python bench/pyspy_summary.py prof.txt --under Uc.emu_start # self time below a frame

Self time is by leaf frame (a Python line's number dropped, so a function's lines add
up); inclusive time counts a function once per sample however deep it recurses.
Frames py-spy cannot name are anonymous executable memory: Unicorn's translated guest
code, or vmrr's own native hooks (vmm/icount_native.c, vmm/linux/fastsys_native.c, each
copied into an mmap'd page). ``--pages`` lists those by 4 KiB page, so the page holding
the instruction counter (a few hundred bytes, one page, many samples) stands out from
the translated code (many pages).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter

_ANON = re.compile(r"^0x([0-9a-f]+) \(\?\)$")


def _name(frame: str) -> str:
    frame = re.sub(r":\d+\)$", ")", frame)
    if _ANON.match(frame):
        return "[anonymous executable memory: translated code or vmrr's native hooks]"
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile")
    parser.add_argument("--under", help="only samples with this frame; self time below it")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--pages", action="store_true", help="anonymous leaf frames by page")
    opts = parser.parse_args()
    own, inclusive, pages = Counter(), Counter(), Counter()
    total = kept = 0
    for line in open(opts.profile):
        line = line.rstrip("\n")
        if not line:
            continue
        stack, count = line.rsplit(" ", 1)
        n = int(count)
        total += n
        frames = stack.split(";")
        if opts.under:
            at = [i for i, f in enumerate(frames) if opts.under in f]
            if not at:
                continue
            frames = frames[at[-1] + 1:] or ["(self)"]
        kept += n
        own[_name(frames[-1])] += n
        anon = _ANON.match(frames[-1])
        if anon:
            pages[int(anon.group(1), 16) >> 12] += n
        for name in {_name(f) for f in frames}:
            inclusive[name] += n
    scope = f" under {opts.under}" if opts.under else ""
    print(f"{kept} of {total} samples{scope} ({100 * kept / max(total, 1):.1f}%)")
    print("self time (% of the samples kept, % of all):")
    for name, n in own.most_common(opts.top):
        print(f"  {100 * n / kept:5.1f}% {100 * n / total:5.1f}%  {name}")
    print("inclusive:")
    for name, n in inclusive.most_common(opts.top):
        print(f"  {100 * n / kept:5.1f}% {100 * n / total:5.1f}%  {name}")
    if opts.pages:
        print("anonymous leaf frames by page:")
        for page, n in pages.most_common(10):
            print(f"  {100 * n / total:5.1f}%  {page << 12:#x}")


if __name__ == "__main__":
    main()
