"""Where a grid's batches run: local worker processes, any executor, or Dask.

Workers receive the manager as bytes pickled with cloudpickle (so functions
defined in ``__main__`` or a notebook travel by value) and rebuild it once per
process; every batch answers with small :class:`~metricache._parallel.Status`
objects, never values.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any

import xxhash

from . import _portable
from ._optional import require
from ._parallel import GridOptions, Status, batches, failed, run_names

__all__ = ["dask_key", "on_dask", "on_executor", "run_batch", "ship"]

#: Managers rebuilt in this (worker) process, by the digest of their pickled bytes.
_REBUILT: dict[str, Any] = {}
_REBUILT_MAX = 16
#: Local worker pools by size. loky's single reusable executor would be resized when
#: ``n_jobs`` changes, and resizing kills workers another grid may still be using;
#: idle workers of every pool exit after :data:`_IDLE_SECONDS` and come back on demand.
_POOLS: dict[int, Any] = {}
_POOLS_LOCK = threading.Lock()
_IDLE_SECONDS = 60


def ship(manager: Any) -> bytes:
    """*manager* as the bytes workers rebuild it from (pickled with cloudpickle)."""
    cloudpickle = require("cloudpickle", "parallel", "running get_all on other processes")
    # Described before pickling starts, so its trial pickles do not run nested
    # inside cloudpickle's own.
    shipping = _portable.shipping_with(cloudpickle.dumps)
    with shipping, _portable.prepared(manager, manager._pickle_options()):
        blob: bytes = cloudpickle.dumps(manager)
    return blob


def _manager_from(blob: bytes) -> Any:
    """The manager *blob* describes, rebuilt once per process (with its own locks)."""
    digest = xxhash.xxh3_128_hexdigest(blob)
    manager = _REBUILT.get(digest)
    if manager is None:
        import pickle

        if len(_REBUILT) >= _REBUILT_MAX:
            _REBUILT.pop(next(iter(_REBUILT)))
        manager = _REBUILT[digest] = pickle.loads(blob)
    return manager


def run_batch(
    blob: bytes, names: list[str], use_stored: bool, verbose: bool | None, on_stale: Any
) -> list[Status]:
    """The task each worker runs: get every name of the batch, answer with statuses."""
    return run_names(_manager_from(blob), names, use_stored, verbose, on_stale)


def _workers(n_jobs: int | None) -> int:
    if n_jobs is None or n_jobs == -1:
        return os.cpu_count() or 1
    return n_jobs


def on_executor(manager: Any, todo: list[str], options: GridOptions) -> Iterator[Status]:
    """Run *todo* on ``options.executor``, or on ``n_jobs`` loky worker processes."""
    executor = options.executor
    workers = getattr(executor, "_max_workers", None) or _workers(options.n_jobs)
    blob = ship(manager)
    pending: dict[Future[list[Status]], list[str]] = {}
    for batch in batches(todo, options.batch, workers):
        args = (blob, batch, options.use_stored, options.verbose, options.on_stale)
        if executor is None:
            pending[_submit_local(workers, *args)] = batch
        else:
            pending[executor.submit(run_batch, *args)] = batch
    return _as_done(pending)


def _pool(workers: int, broken: Any = None) -> Any:
    """The local pool of *workers* loky processes, made on first use or to replace *broken*."""
    loky = require("loky", "parallel", "get_all(n_jobs=...)")
    with _POOLS_LOCK:
        pool = _POOLS.get(workers)
        if pool is None or pool is broken:
            pool = loky.ProcessPoolExecutor(max_workers=workers, timeout=_IDLE_SECONDS)
            _POOLS[workers] = pool
        return pool


def _submit_local(workers: int, *args: Any) -> Future[list[Status]]:
    """Submit a batch to the local pool; a pool broken by a killed worker is replaced."""
    pool = _pool(workers)
    try:
        return pool.submit(run_batch, *args)  # type: ignore[no-any-return]
    except RuntimeError:  # BrokenProcessPool, or shut down at exit
        return _pool(workers, broken=pool).submit(run_batch, *args)  # type: ignore[no-any-return]


def _as_done(pending: dict[Future[list[Status]], list[str]]) -> Iterator[Status]:
    """Statuses as batches finish; a batch whose worker died fails as a whole."""
    while pending:
        done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
        for future in done:
            batch = pending.pop(future)
            try:
                yield from future.result()
            except Exception as err:  # noqa: BLE001  # a killed worker, an unpicklable result
                yield from failed(batch, err)


def dask_key(
    manager: Any, batch: list[str], options: GridOptions, codes: dict[str, str] | None = None
) -> str:
    """The task key of a batch: the same work on the same store, from any client, is one key.

    Built from the names, the storage, the options that change the work and the
    code fingerprint of each metric family in the batch (*codes* memoises those
    by family across the batches of one grid).
    """
    codes = {} if codes is None else codes
    families = []
    for base in dict.fromkeys(_base_of(manager, n) for n in batch):
        if base not in codes:
            first = next(n for n in batch if _base_of(manager, n) == base)
            codes[base] = repr(manager._provenance.code_of(first))
        families.append(codes[base])
    text = "\0".join(
        [repr(manager.storage_interface), repr((options.use_stored, options.on_stale))]
        + batch
        + families
    )
    return f"metricache-{batch[0][:40]}-{xxhash.xxh3_128_hexdigest(text.encode())}"


def _base_of(manager: Any, name: str) -> str:
    owner = manager._owners.get(name)
    return owner.base if owner is not None else name


def on_dask(manager: Any, todo: list[str], options: GridOptions) -> Iterator[Status]:
    """Run *todo* on a ``dask.distributed.Client``: one task per batch.

    Batches are sized as for local workers, over the cluster's threads: one entry
    per task for a grid of up to 16 entries per thread, fewer, larger tasks for a
    bigger one (Dask's own cost per task is milliseconds). The pickled manager
    goes to every worker once (scattered), not with each task.
    """
    distributed = require("distributed", "dask", "get_all(client=...)")
    client = options.client
    # A key of its own (hash=False): scattering the same bytes again just after the last
    # grid released them can meet the scheduler still forgetting that key, and hang.
    blob = client.scatter(ship(manager), broadcast=True, hash=False)
    codes: dict[str, str] = {}
    threads = sum(client.nthreads().values()) or 1
    todo_batches = batches(todo, options.batch, threads)
    keys = [dask_key(manager, batch, options, codes) for batch in todo_batches]
    # One map: one graph update for every task, not one message per submit.
    submitted = client.map(
        _dask_batch, todo_batches, key=keys, pure=False, blob=blob,
        use_stored=options.use_stored, verbose=options.verbose, on_stale=options.on_stale,
    )  # fmt: skip
    return _dask_done(distributed, dict(zip(submitted, todo_batches, strict=True)), blob)


def _dask_batch(
    names: list[str], blob: bytes, use_stored: bool, verbose: bool | None, on_stale: Any
) -> list[Status]:
    """A Dask task: :func:`run_batch` with the batch first (``client.map`` maps over it)."""
    return run_batch(blob, names, use_stored, verbose, on_stale)


def _dask_done(distributed: Any, futures: dict[Any, list[str]], blob: Any) -> Iterator[Status]:
    """Statuses as tasks finish; *blob* (the scattered manager) is held until the last.

    Results are fetched by ``as_completed`` in the background, in bulk: a
    ``result()`` per task would cost a round trip to the client's event loop each.
    """
    done = distributed.as_completed(list(futures), with_results=True, raise_errors=False)
    try:
        for future, result in done:
            batch = futures.pop(future)
            future.release()
            if isinstance(result, BaseException):  # KilledWorker after Dask's retries, ...
                yield from failed(batch, result)
            else:
                yield from result
    finally:
        blob.release()
