"""A notebook-style tour of metricache: run it cell by cell (``# %%``) or as a script.

Compute, reuse, look at the cache, make it stale, and ask the command line.
Run: ``python examples/tour.py [FOLDER]`` (default: a temp folder, removed after).
"""

# %% A manager over a folder, and two metrics: one reads the other.
from __future__ import annotations

import subprocess
import sys
import tempfile
import time

import numpy as np

from metricache import ParameterizedDatedCacheManager

folder = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="metricache-tour-")
CM = ParameterizedDatedCacheManager(folder, verbose=False)


@CM.collect
def noise() -> np.ndarray:
    return np.random.default_rng(7).normal(size=(200, 2048))


@CM.collect(params_list=[(1,), (4,), (16,)])
def smoothed(width: int) -> np.ndarray:
    kernel = np.ones(width) / width
    return np.apply_along_axis(np.convolve, 1, CM.noise(), kernel, "same")


# %% Compute once, then reuse: from memory, and from disk after a "restart".
start = time.perf_counter()
first = CM.smoothed(4)
computed = time.perf_counter() - start
start = time.perf_counter()
again = CM.smoothed(4)
from_memory = time.perf_counter() - start
CM.clear_cache()  # what a new kernel sees: nothing in memory, everything on disk
start = time.perf_counter()
loaded = CM.smoothed(4)
from_disk = time.perf_counter() - start
assert np.array_equal(first, loaded) and again is first
print(f"computed {computed * 1e3:.1f} ms, memory {from_memory * 1e6:.1f} us, "
      f"disk {from_disk * 1e3:.1f} ms")  # fmt: skip

# %% What is stored: every entry, its size, date and status (a table in a notebook).
CM.smoothed.get_all()
print(CM.status())

# %% Make it stale: invalidating noise marks everything computed from it.
CM.invalidate("noise")
print(CM.explain("smoothed_16"))
assert CM.explain("smoothed_16").stale
print(CM.graph().to_mermaid())

# %% The command line sees the same folder, without this code (in a notebook: !metricache ...).
for args in (["ls"], ["du"], ["verify"], ["explain", "smoothed_16"]):
    out = subprocess.run(
        [sys.executable, "-m", "metricache", "--dir", folder, *args],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    print(f"$ metricache {' '.join(args)}\n{out}")

# %% Recompute what is stale, and it is fresh again.
with CM.stale_policy("recompute"):
    CM.smoothed.get_all()
assert not CM.explain("smoothed_16").stale
if len(sys.argv) == 1:
    import shutil

    shutil.rmtree(folder)
