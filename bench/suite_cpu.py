"""Where a command's CPU goes, by kind of process: run it, sample every process on the machine
twice a second, and print the CPU seconds each kind used (moto servers, serverless-offline's
Python workers, Chromium, `sls package`, the pytest workers, ...) and how many of each started.

Made for the test suite (docs/testing.md, "What a run costs"): on 2 cores it is CPU-bound, so
its wall time is the CPU it needs over two. Also printed: how busy the whole machine was, from
/proc/stat (everything running counts: run it on a quiet machine).

A process is counted from the first sample that sees it: one that starts and ends between two
samples is missed, and the last half second of each is. Kinds are told apart by command line.

Usage: python bench/suite_cpu.py -- pytest -n 4 --dist loadfile --no-loadscope-reorder tests
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

HZ = os.sysconf("SC_CLK_TCK")
# (kind, what its command line holds), first match wins.
KINDS = [
    ("serverless-offline Python workers", ("invoke.py",)),
    ("moto servers", ("moto",)),
    ("chromedriver", ("chromedriver",)),
    ("Chromium", ("chrom",)),
    ("cfn-lint", ("cfn-lint", "cfnlint")),
    ("sls package", ("sls", "package")),
    ("sls offline", ("sls", "offline")),
    ("sls print", ("sls", "print")),
    ("pytest and its workers", ("pytest",)),
    ("pytest and its workers", ("xdist",)),
    ("pytest and its workers", ("exec(eval(sys.stdin.readline()))",)),
    ("other node", ("node",)),
    ("other python", ("python",)),
]


def kind(command: str) -> str:
    for name, parts in KINDS:
        if all(part in command for part in parts):
            return name
    return "other"


def machine_busy() -> tuple[int, int]:
    """(busy, total) clock ticks of every core since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(values) - values[3] - values[4], sum(values)


def sample() -> dict[int, tuple[str, int]]:
    """Every process now: pid -> (command line, CPU ticks so far)."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()
            line = Path(f"/proc/{entry.name}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
        found[int(entry.name)] = (line, int(fields[11]) + int(fields[12]))
    return found


def main() -> int:
    command = sys.argv[1:]
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        print(__doc__)
        return 2
    me = os.getpid()
    seen: dict[int, list] = {}  # pid -> [kind, CPU ticks counted so far]
    used: Counter = Counter()
    started: Counter = Counter()
    # What ran before the command counts only from now on.
    for pid, (_, ticks) in sample().items():
        seen[pid] = ["before", ticks]
    busy0, total0 = machine_busy()
    began = time.monotonic()
    child = subprocess.Popen(command)
    while child.poll() is None:
        for pid, (line, ticks) in sample().items():
            if pid == me or not line:
                continue  # this sampler, a kernel thread
            if pid not in seen:
                seen[pid] = [kind(line), 0]
                started[seen[pid][0]] += 1
            used[seen[pid][0]] += ticks - seen[pid][1]
            seen[pid][1] = ticks
        time.sleep(0.5)
    busy1, total1 = machine_busy()
    wall = time.monotonic() - began
    print(
        f"\n{wall:.0f} s; the machine was busy {(busy1 - busy0) / HZ:.0f} CPU-s of {(total1 - total0) / HZ:.0f} "
        f"({100 * (busy1 - busy0) / max(1, total1 - total0):.0f}%); by kind of process:",
        file=sys.stderr,
    )
    used.pop("before", None)
    for name, ticks in used.most_common():
        print(f"  {name:36s} {ticks / HZ:7.1f} CPU-s  {started[name]:5d} processes", file=sys.stderr)
    return child.returncode


if __name__ == "__main__":
    sys.exit(main())
