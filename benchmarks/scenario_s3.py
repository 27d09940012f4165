"""(s) S3: put and get of large entries and small hits, against raw s3fs, on a moto server.

The server is moto in server mode on 127.0.0.1 (the test suite's), so absolute times
are moto's, not AWS's; the ratios say what metricache adds over s3fs moving the
same bytes: the record, the checksum, the decode. Requests are counted by a proxy
in front of the server (untimed runs).
"""

from __future__ import annotations

import functools
import io
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import s3fs
from common import Config, MiB, Scratch, array_of, size_label
from harness import Contender, Row, Table, Target, measure

from metricache import AutoStorageInterface, NpyStorageInterface

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests._faultproxy import FaultProxy  # noqa: E402 - the repository's test helpers
from tests._s3server import S3Server  # noqa: E402

RAW_PUT, RAW_GET = "s3fs pipe (raw)", "s3fs cat (raw)"
SMALL = 100  # float64 values in a small entry (928 bytes as .npy)


def _sizes(config: Config) -> tuple[tuple[int, int], ...]:
    """(bytes, rounds): the issue's 8 and 100 MiB, or 1 MiB with --quick."""
    return ((MiB, 3),) if config.quick else ((8 * MiB, 7), (100 * MiB, 3))


def _npy_bytes(arr: np.ndarray) -> bytes:
    """The .npy file of *arr*: the bytes raw s3fs moves in the baseline rows."""
    out = io.BytesIO()
    np.save(out, arr)
    return out.getvalue()


def _timed(contenders: list[Contender], rounds: int) -> list[Row]:
    """One untimed call each (connections, caches), then *rounds* interleaved rounds."""
    for c in contenders:
        if c.setup is not None:
            c.setup()
        c.run()
    return measure(contenders, rounds, warmup=False)


def _fresh_load(url: str, options: dict[str, Any], cls: Callable[..., Any]) -> Callable[[], Any]:
    """A load by a new interface each time (nothing held in memory), as a new process does."""
    return lambda: cls(url, storage_options=options).load("x")


def _large(server: S3Server, nbytes: int, rounds: int) -> Iterator[Table]:
    fs, options = server.filesystem(), server.storage_options()
    bucket = server.bucket("bench")
    arr, raw_path = array_of(nbytes), f"{bucket}/raw/x.npy"
    data, url = _npy_bytes(arr), f"s3://{bucket}/cache"
    storage = NpyStorageInterface(url, storage_options=options)
    label = size_label(nbytes)
    puts = [
        Contender(RAW_PUT, functools.partial(fs.pipe_file, raw_path, data), number=1),
        Contender("metricache Npy save", functools.partial(storage.save, "x", arr), number=1),
    ]
    yield Table(
        f"(s) S3 put, {label} float64 array",
        _timed(puts, rounds),
        RAW_PUT,
        targets=[Target("metricache Npy save", 1.2)],
        notes=["save: record PUT + data PUT (a multipart upload above 50 MiB), hashed once"],
    )
    gets = [
        Contender(RAW_GET, functools.partial(fs.cat_file, raw_path), number=1),
        Contender(
            "metricache Npy load (verify)",
            _fresh_load(url, options, NpyStorageInterface),
            number=1,
        ),  # fmt: skip
    ]
    yield Table(
        f"(s) S3 get, {label} float64 array",
        _timed(gets, rounds),
        RAW_GET,
        targets=[Target("metricache Npy load (verify)", 1.2)],
        notes=["load: record GET + one streamed data GET, checksum verified while reading"],
    )


def _requests(proxy: FaultProxy, action: Callable[[], Any]) -> str:
    """How many requests *action* sends (through the counting proxy)."""
    proxy.clear()
    action()
    return str(len(proxy.requests))


def _small(server: S3Server, rounds: int) -> Table:
    fs, options = server.filesystem(), server.storage_options()
    bucket = server.bucket("bench-small")
    arr = np.arange(float(SMALL))
    raw_path, url = f"{bucket}/raw/x.npy", f"s3://{bucket}/cache"
    fs.pipe_file(raw_path, _npy_bytes(arr))
    for cls in (NpyStorageInterface, AutoStorageInterface):
        cls(f"{url}/{cls.__name__}", storage_options=options).save("x", arr)
    interfaces = {
        "metricache Npy load": NpyStorageInterface,
        "metricache Auto load": AutoStorageInterface,
    }
    contenders = [Contender(RAW_GET, functools.partial(fs.cat_file, raw_path), number=5)]
    contenders += [
        Contender(name, _fresh_load(f"{url}/{cls.__name__}", options, cls), number=5)
        for name, cls in interfaces.items()
    ]
    rows = _timed(contenders, rounds)
    proxy = FaultProxy(("127.0.0.1", server.port))
    counted = proxy.options(options)
    raw = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False, **counted)
    rows[0].extra["requests"] = _requests(proxy, lambda: raw.cat_file(raw_path))
    for row, cls in zip(rows[1:], interfaces.values(), strict=True):
        load = _fresh_load(f"{url}/{cls.__name__}", counted, cls)
        row.extra["requests"] = _requests(proxy, load)
    return Table(
        f"(s) S3 small hit, {SMALL} float64 values",
        rows,
        RAW_GET,
        targets=[Target("metricache Npy load", 3.0)],
        notes=[
            "requests per hit counted at a proxy in front of the server (goal: <= 3)",
            "Npy: record GET + data GET; Auto first asks which format holds the name",
        ],
        extra_columns=["requests"],
    )


def run(config: Config, scratch: Scratch) -> Iterator[Table]:
    server = S3Server()
    try:
        for nbytes, rounds in _sizes(config):
            yield from _large(server, nbytes, rounds)
        yield _small(server, 3 if config.quick else 9)
    finally:
        server.stop()
