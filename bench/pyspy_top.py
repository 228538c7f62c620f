"""Summarise a py-spy ``--format raw`` profile (collapsed stacks): where the process spent its samples.

    python bench/pyspy_top.py PROFILE.txt [--top 25]

Prints the share of samples by leaf function (self time), by function anywhere on the stack (inclusive
time), and by top-level area (the first frame of a few known packages found on the stack).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")

AREAS = [  # first match on the stack, from the leaf up
    ("workflow sandbox (import/restrictions)", "workflow_sandbox/"),
    ("pydantic data converter", "temporalio/contrib/pydantic"),
    ("payload conversion", "temporalio/converter"),
    ("httpx/httpcore (Moodle HTTP client)", "httpcore/"),
    ("httpx/httpcore (Moodle HTTP client)", "httpx/"),
    ("moodle client", "moodle/"),
    ("protobuf", "google/protobuf"),
    ("temporal worker (activity)", "temporalio/worker/_activity"),
    ("temporal worker (workflow)", "temporalio/worker/_workflow"),
    ("temporal worker (other)", "temporalio/"),
    ("uvicorn / simulator", "uvicorn/"),
    ("simulator", "fake_moodle/"),
    ("asyncio event loop", "asyncio/"),
]


def parse(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def name(frame: str) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    file = m["file"]
    for marker in ("site-packages/", "lib/python3.11/"):
        file = file.split(marker)[-1]
    return f"{m['func']} ({file})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    stacks = parse(args.profile)
    total = sum(c for _, c in stacks) or 1
    leaf: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    for frames, count in stacks:
        leaf[name(frames[-1])] += count
        for f in {name(f) for f in frames}:
            inclusive[f] += count
        area = "other"
        for frame in reversed(frames):
            hit = next((label for label, marker in AREAS if marker in frame), None)
            if hit:
                area = hit
                break
        areas[area] += count
    print(f"{args.profile}: {total} samples")
    for title, counter in (("by area (innermost known package)", areas), ("self", leaf), ("inclusive", inclusive)):
        print(f"\n-- {title}")
        for key, count in counter.most_common(args.top):
            print(f"{100 * count / total:6.1f}%  {key}")


if __name__ == "__main__":
    main()
