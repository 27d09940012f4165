"""Type checking user code: ``mypy --strict`` accepts the README's idioms.

Each test runs the project's own mypy (``sys.executable -m mypy``) on a user file,
so what is checked is the installed package as a user's type checker sees it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "typed_usage.py"

HEADER = """\
from __future__ import annotations
import numpy as np
import numpy.typing as npt
from metricache import NpzStorageInterface, ParameterizedDataCacheManager

CM = ParameterizedDataCacheManager(NpzStorageInterface("cache/"), verbose=False)

@CM.collect
def spectrum() -> npt.NDArray[np.float64]:
    return np.arange(3.0)

def poly(a: int, b: int) -> int:
    return a + b

CM.collect(poly, params_list=[[1, 2]])
"""


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mypy cache for the module: the first run pays for numpy's stubs."""
    return tmp_path_factory.mktemp("mypy-cache")


def mypy(path: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    """``mypy --strict path`` with the project's interpreter."""
    command = [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cache), str(path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)


def test_collected_metrics_are_attributes_for_the_type_checker(
    tmp_path: Path, mypy_cache: Path
) -> None:
    user = tmp_path / "user.py"
    user.write_text(
        HEADER
        + "s: npt.NDArray[np.float64] = CM.spectrum()\n"
        + "p: int = CM.poly(1, 2)\n"
        + "values: list[int] = CM.poly.get_all()\n"
    )
    done = mypy(user, mypy_cache)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_managers_own_attributes_keep_their_types(tmp_path: Path, mypy_cache: Path) -> None:
    # CM.<anything> is Any for metrics, but a real attribute is still checked.
    user = tmp_path / "user.py"
    user.write_text(HEADER + "wrong: str = CM.verbose\nCM.get(3)\n")
    done = mypy(user, mypy_cache)
    assert done.returncode == 1
    assert 'variable has type "str"' in done.stdout
    assert 'Argument 1 to "get"' in done.stdout


def test_the_typed_example_passes_mypy_strict(mypy_cache: Path) -> None:
    done = mypy(EXAMPLE, mypy_cache)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_typed_example_runs() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=120, check=True
    )
    assert float(done.stdout) > 0
