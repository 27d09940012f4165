"""Benchmarks: metricache against raw numpy, lru_cache, joblib.Memory and diskcache.

Run ``make bench`` (or ``python benchmarks/run.py``); ``--quick`` runs every
scenario at small sizes in well under a minute. Scratch data lives in a temp
folder removed at the end; nothing is written elsewhere unless ``--json`` asks.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import scenario_disk
import scenario_frames
import scenario_many
import scenario_memory
import scenario_miss
import scenario_open
import scenario_parallel
import scenario_s3
import scenario_tiny
from common import Config, Scratch
from harness import Table, render, to_json

Scenario = Callable[[Config, Scratch], Iterator[Table]]

SCENARIOS: dict[str, Scenario] = {
    "memory": scenario_memory.run,
    "disk": scenario_disk.run,
    "miss": scenario_miss.run,
    "many": scenario_many.run,
    "open": scenario_open.run,
    "frames": scenario_frames.run,
    "tiny": scenario_tiny.run,
    "s3": scenario_s3.run,
    "parallel": scenario_parallel.run,
}

FOOTNOTES = [
    "The old package (simple_metrics_manager 0.2.1.1) is not measured: it does not "
    "import on numpy 2, so it cannot run next to the others in this process.",
    "Ratios divide each row's median (or minimum) by the baseline row's; rounds are "
    "interleaved (round-robin over contenders, rotating the order each round).",
    "Targets are the issue's, informational only; at --quick sizes they are indicative.",
]


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def _filesystem(path: str) -> str:
    """Type and mount options of the file system holding *path* (Linux), else 'unknown'.

    Options matter: with ``discard``, deleting or replacing a file waits for the device.
    """
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                _, mount, fstype, options = line.split()[:4]
                inside = path == mount or path.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) > len(best):
                    best, kind = mount, f"{fstype} ({options})"
    except OSError:
        pass
    return kind


def _source_state() -> str:
    """The git commit of the measured source, and whether src/ has uncommitted changes."""
    repo = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], cwd=repo, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown (no git)"
    if not commit:
        return "unknown (not a git checkout)"
    return f"git {commit}" + (" + uncommitted changes in src/" if dirty else "")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(temp_root: str, config: Config) -> dict[str, str]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "mode": "quick" if config.quick else "full",
        "platform": platform.platform(),
        "cpu": f"{_cpu_model()}, {os.cpu_count()} logical CPUs ({usable} usable)",
        "python": sys.version.split()[0],
        **{
            p: _version(p)
            for p in ("numpy", "metricache", "xxhash", "joblib", "diskcache", "pandas", "pyarrow")
        },
        "metricache source": _source_state(),
        "temp dir file system": _filesystem(os.path.realpath(temp_root)),
        "load average at start": _load(),
    }


def _load() -> str:
    """The 1/5/15-minute load averages: other work on the machine makes timings noisy."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, < 1 minute")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument(
        "--only", nargs="+", choices=list(SCENARIOS), help="run only these scenarios"
    )
    parser.add_argument(
        "--entries", type=int, help="small entries in scenarios (d) and (e) (default 10,000)"
    )
    args = parser.parse_args(argv)
    config = Config.make(args.quick, args.entries)
    chosen = args.only or list(SCENARIOS)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="metricache-bench-") as root:
        info = machine_info(root, config)
        width = max(map(len, info))
        for key, value in info.items():
            print(f"{key.ljust(width)}  {value}")
        print(flush=True)
        tables = []
        for name in chosen:
            for table in SCENARIOS[name](config, Scratch(Path(root) / name)):
                print(render(table), end="\n\n", flush=True)
                tables.append(table)
    for i, note in enumerate(FOOTNOTES, 1):
        print(f"[{i}] {note}")
    print(f"total benchmark time {time.perf_counter() - started:.1f} s; load average {_load()}")
    if args.json:
        dump = {"machine": info, "tables": [to_json(t) for t in tables]}
        Path(args.json).write_text(json.dumps(dump, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
