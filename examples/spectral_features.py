"""A real analysis: spectral features over a parameter grid, cached by metricache.

It shows, on a fresh folder: the first run computing every entry, a second
process reusing them all, an edit to a helper making exactly the entries that
used it stale, and the command line answering from the shell.

Run: ``python examples/spectral_features.py [WORKDIR]`` (default: a temp folder).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
COMPUTE = "import features, json; print(json.dumps(features.CM.table()[0]))"
RECOMPUTE = """
import features
with features.CM.stale_policy("recompute"):
    features.CM.table()
"""


def python(workdir: Path, code: str) -> str:
    """Run *code* in a new process in *workdir*, as a notebook kernel restart would."""
    env = {**os.environ, "FEATURES_CACHE": str(workdir / "cache")}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=workdir, env=env, capture_output=True, text=True
    )
    done.check_returncode()
    return done.stdout.strip()


def cli(workdir: Path, *args: str, check: bool = True) -> str:
    """``metricache --dir cache ARGS``, as typed in a shell."""
    command = [sys.executable, "-m", "metricache", "--dir", "cache", *args]
    print("$ metricache --dir cache", " ".join(args))
    done = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    print(done.stdout.rstrip())
    if check and done.returncode != 0:
        raise SystemExit(f"metricache {args[0]} failed: {done.stderr}")
    return done.stdout


def timed(workdir: Path, label: str) -> float:
    start = time.perf_counter()
    row = python(workdir, COMPUTE)
    seconds = time.perf_counter() - start
    print(f"{label}: {seconds:.2f} s, first row {row}")
    return seconds


def main(workdir: Path) -> None:
    shutil.copy(HERE / "spectral" / "features.py", workdir / "features.py")
    timed(workdir, "first run (computes 19 entries)")
    timed(workdir, "second run (loads them)")
    cli(workdir, "ls", "features_*")
    cli(workdir, "du")
    cli(workdir, "verify")

    # An edit to the taper: every PSD used it, so PSDs, features and the table are stale.
    module = workdir / "features.py"
    module.write_text(module.read_text().replace("np.hanning(n)", "np.hamming(n)"))
    explain = cli(workdir, "explain", "table", "--module", "features:CM")
    assert "helper taper()" in explain, explain
    raw = cli(workdir, "explain", "recording_5p0_0p1", "--module", "features:CM")
    assert "is fresh" in raw, raw  # the recordings never called taper: still fresh

    cli(workdir, "report", "--html", "report.html")
    # Recompute what is stale (and only that): the recordings are loaded, not recomputed.
    python(workdir, RECOMPUTE)
    after = cli(workdir, "explain", "table", "--module", "features:CM")
    assert "is fresh" in after, after


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]).resolve())
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp))
