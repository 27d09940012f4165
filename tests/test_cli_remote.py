"""The installed ``metricache`` script on a cache folder in S3 (the moto server).

Each command runs as its own process, reaching the server with ``--storage-option``
alone (no credentials in the environment), as a user on another machine would.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from metricache import AutoStorageInterface, DatedCacheManager

from ._s3server import S3Server
from .test_cli import console_script


@pytest.fixture
def filled(s3: S3Server) -> str:
    """``s3://.../cache`` holding three entries, one of them a dependency of another."""
    url = f"s3://{s3.bucket('cli')}/cache"
    CM = DatedCacheManager(AutoStorageInterface(url, storage_options=s3.storage_options()))
    CM.verbose = False
    CM.set_functions_dict(
        {
            "raw": lambda: np.arange(1000.0),
            "scaled": lambda: CM["raw"] * 2,
            "config": lambda: {"depth": {"max": 3}},
        }
    )
    for name in ("scaled", "config"):
        CM[name]
    return url


def options(s3: S3Server) -> list[str]:
    """The ``--storage-option`` arguments that reach the test server."""
    return [
        "--storage-option", "key=testing",
        "--storage-option", "secret=testing",
        "--storage-option", f"client_kwargs.endpoint_url={s3.endpoint}",
        "--storage-option", "client_kwargs.region_name=us-east-1",
    ]  # fmt: skip


def script(url: str, s3: S3Server, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "METRICACHE_"))}
    return subprocess.run(
        [console_script(), "--dir", url, *options(s3), *args],
        cwd=cwd, capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip


def test_ls_info_du_and_verify_on_s3(filled: str, s3: S3Server, tmp_path: Path) -> None:
    ls = script(filled, s3, "ls", "--json", cwd=tmp_path)
    assert ls.returncode == 0, ls.stderr
    rows = {r["name"]: r for r in json.loads(ls.stdout)}
    assert sorted(rows) == ["config", "raw", "scaled"]
    assert {r["status"] for r in rows.values()} == {"ok"}
    assert rows["raw"]["format"] == "npy" and rows["config"]["format"] == "json"
    info = script(filled, s3, "info", "scaled", cwd=tmp_path)
    assert info.returncode == 0 and "raw" in info.stdout
    verify = script(filled, s3, "verify", cwd=tmp_path)
    assert verify.returncode == 0 and "3 ok, 0 damaged" in verify.stdout
    du = script(filled, s3, "du", "--json", cwd=tmp_path)
    assert json.loads(du.stdout)["total_bytes"] > 8000  # raw alone is 8000 bytes of data
    assert list(tmp_path.iterdir()) == []  # nothing was written locally


def test_verify_finds_damage_and_rm_removes_on_s3(
    filled: str, s3: S3Server, tmp_path: Path
) -> None:
    fs = s3.filesystem()
    fs.pipe_file(filled[len("s3://") :] + "/raw.npy", b"not the array")
    bad = script(filled, s3, "verify", cwd=tmp_path)
    assert bad.returncode == 1 and "damaged  raw" in bad.stdout
    rm = script(filled, s3, "rm", "config", "--yes", cwd=tmp_path)
    assert rm.returncode == 0, rm.stderr
    ls = script(filled, s3, "ls", "--json", cwd=tmp_path)
    assert "config" not in {r["name"] for r in json.loads(ls.stdout)}
    assert not fs.exists(filled[len("s3://") :] + "/config.json")


def test_bad_storage_options_are_usage_errors(filled: str, s3: S3Server, tmp_path: Path) -> None:
    bad = subprocess.run(
        [console_script(), "--dir", filled, "--storage-option", "novalue", "ls"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2 and "KEY=VALUE" in bad.stderr
    local = subprocess.run(
        [console_script(), "--dir", str(tmp_path), "--storage-option", "anon=true", "ls"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert local.returncode == 2 and "remote folders" in local.stderr
    assert "Traceback" not in bad.stderr + local.stderr
