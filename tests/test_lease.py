"""Lease locks on S3 (moto's real server): one computation of a name across processes.

Every process here is a real spawned interpreter talking HTTP to the server; kills
are real SIGKILLs, pauses real SIGSTOPs, conflicts real 409 responses from a proxy.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from metricache import (
    AutoStorageInterface,
    CacheWriteWarning,
    DatedCacheManager,
    LocalLocks,
    LockProvider,
    LockTimeoutError,
    MetricCycleError,
    NpzStorageInterface,
    S3LeaseLocks,
    SharedLockWarning,
    ThreadLocks,
)
from metricache._fsstore import FsspecStore
from metricache._layout import lease_key
from metricache._leaseio import LeaseIO, Taken
from metricache._remotelocks import DaskOrThreadLocks, locks_for

from . import _lease_workers as workers
from ._s3server import S3Server

TTL = 2.0
_ctx = multiprocessing.get_context("spawn")


def spawn(target: Callable[..., None], *args: Any, **kwargs: Any) -> Any:
    process = _ctx.Process(target=target, args=args, kwargs=kwargs)
    process.start()
    return process


def wait_for(check: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def outcome(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    assert "error" not in data, data.get("traceback", data)
    return data


@pytest.fixture
def folder(s3: S3Server, s3_url: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """A fresh S3 cache folder and the options reaching it."""
    yield s3_url, s3.storage_options()


def lease_at(s3: S3Server, url: str, name: str) -> Any:
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    return LeaseIO(s3.filesystem(), bucket).read(f"{prefix}/{lease_key(name)}")


# -- one process ------------------------------------------------------------------------


def test_a_held_name_is_one_lease_object_gone_after_release(
    s3: S3Server, folder: tuple[str, dict[str, Any]]
) -> None:
    url, options = folder
    locks = S3LeaseLocks(url, options, ttl=TTL)
    with locks.hold("alpha"):
        lease = lease_at(s3, url, "alpha")
        assert lease is not None
        assert lease.body["pid"] == os.getpid() and lease.body["ttl"] == TTL
        assert lease.body["name"] == "alpha" and isinstance(lease.body["beats"], int)
        assert lease.owner.split("-")[-2] == str(os.getpid())
        assert lease_at(s3, url, "beta") is None
    assert lease_at(s3, url, "alpha") is None
    with S3LeaseLocks(url, options, ttl=TTL).hold("alpha", timeout=0):
        pass  # free at once for anyone else


def test_another_holder_times_out_naming_the_holder(
    s3: S3Server, folder: tuple[str, dict[str, Any]]
) -> None:
    url, options = folder
    with S3LeaseLocks(url, options, ttl=TTL).hold("m"):
        other = S3LeaseLocks(url, options, ttl=TTL)
        with (
            pytest.raises(LockTimeoutError, match="waiting 0.3 s for metric 'm'"),
            other.hold("m", timeout=0.3),
        ):
            raise AssertionError("held twice")
        with pytest.raises(LockTimeoutError) as caught, other.hold("m", timeout=0):
            pass
        assert f"process {os.getpid()}" in str(caught.value)
        assert "server's clock" in str(caught.value)
        with other.hold("n", timeout=0):
            pass  # other names are free


def test_a_thread_that_holds_a_name_asking_again_is_a_cycle(
    folder: tuple[str, dict[str, Any]],
) -> None:
    url, options = folder
    locks = S3LeaseLocks(url, options, ttl=TTL)
    with (
        locks.hold("loop"),
        pytest.raises(MetricCycleError, match="loop -> loop"),
        locks.hold("loop"),
    ):
        pass
    CM = DatedCacheManager(NpzStorageInterface(url, storage_options=options, locks=locks))
    CM.set_functions_dict({"me": lambda: CM.get("me")})
    with pytest.raises(MetricCycleError):
        CM.get("me", verbose=False)
    with locks.hold("loop", timeout=0):
        pass  # released by the failed attempts


def test_threads_of_one_process_take_turns(folder: tuple[str, dict[str, Any]]) -> None:
    url, options = folder
    locks = S3LeaseLocks(url, options, ttl=TTL)
    inside, overlaps = [0], [0]

    def work() -> None:
        for _ in range(3):
            with locks.hold("shared"):
                inside[0] += 1
                overlaps[0] += inside[0] > 1
                time.sleep(0.02)
                inside[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert overlaps == [0]


def test_bad_timings_are_refused_before_any_request(s3: S3Server, s3_url: str) -> None:
    for ttl, beat in [(0, None), (-1, None), (2, 1), (2, 0), (2, 5)]:
        with pytest.raises(ValueError, match="heartbeat < ttl / 2"):
            S3LeaseLocks(s3_url, s3.storage_options(), ttl=ttl, heartbeat=beat)
    assert s3.filesystem().find(s3_url) == []


def test_a_pickled_provider_is_a_fresh_one_on_the_same_folder(
    s3: S3Server, folder: tuple[str, dict[str, Any]]
) -> None:
    url, options = folder
    locks = S3LeaseLocks(url, options, ttl=TTL, heartbeat=0.5)
    with locks.hold("p"):
        copy = pickle.loads(pickle.dumps(locks))
        assert (copy.scope, copy.ttl, copy.heartbeat) == (locks.scope, TTL, 0.5)
        with pytest.raises(LockTimeoutError), copy.hold("p", timeout=0.2):
            pass  # the copy holds nothing of the original's


# -- several processes ------------------------------------------------------------------


def test_two_processes_compute_a_missing_metric_once(
    folder: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    url, options = folder
    log, start = tmp_path / "log", tmp_path / "start"
    outs = [tmp_path / f"out{i}" for i in range(2)]
    common = (url, options, TTL, str(log))
    procs = [
        spawn(workers.get_slow, *common, f"p{i}", str(out), str(start), seconds=1.0)
        for i, out in enumerate(outs)
    ]
    time.sleep(0.5)
    start.touch()
    for proc in procs:
        proc.join(120)
    results = [outcome(out) for out in outs]
    assert len(workers.computes(log)) == 1
    winner = workers.computes(log)[0].removeprefix("slow:")
    assert [r["value"] for r in results] == [winner, winner]
    assert all(r["warnings"] == [] for r in results)
    storage = NpzStorageInterface(url, storage_options=options)
    assert workers.decode(storage.load("slow")) == winner
    assert storage.check().ok


def test_a_killed_holder_is_taken_over_once_its_lease_expires(
    s3: S3Server, folder: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    url, options = folder
    log, stall = tmp_path / "log", tmp_path / "stall"
    stall.touch()
    victim = spawn(workers.get_slow, url, options, TTL, str(log), "dead", str(tmp_path / "o1"),
                   stall=str(stall))  # fmt: skip
    wait_for(lambda: Path(f"{stall}.pid").exists(), "the first holder to compute")
    assert lease_at(s3, url, "slow").body["pid"] == victim.pid
    os.kill(victim.pid, signal.SIGKILL)
    victim.join(30)
    assert not (tmp_path / "o1").exists()  # it died mid-compute, storing nothing
    # The next process waits for the lease to expire, then computes and stores.
    survivor = tmp_path / "o2"
    proc = spawn(workers.get_slow, url, options, TTL, str(log), "alive", str(survivor))
    proc.join(120)
    assert outcome(survivor)["value"] == "alive"
    assert workers.computes(log) == ["slow:dead", "slow:alive"]
    storage = NpzStorageInterface(url, storage_options=options)
    assert workers.decode(storage.load("slow")) == "alive"
    assert storage.check().ok and [e.name for e in storage.entries()] == ["slow"]
    assert lease_at(s3, url, "slow") is None  # released by the survivor


def test_the_heartbeat_keeps_a_long_computation_held(
    s3: S3Server, folder: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    url, options = folder
    log, stall = tmp_path / "log", tmp_path / "stall"
    stall.touch()
    first = spawn(workers.get_slow, url, options, TTL, str(log), "long", str(tmp_path / "o1"),
                  stall=str(stall))  # fmt: skip
    wait_for(lambda: Path(f"{stall}.pid").exists(), "the holder to compute")
    second = spawn(workers.get_slow, url, options, TTL, str(log), "late", str(tmp_path / "o2"))
    # Three TTLs by the server's own clock: without renewals the lease would expire.
    started = lease_at(s3, url, "slow").body["beats"]
    wait_for(lambda: lease_at(s3, url, "slow").body["beats"] >= started + 9, "9 heartbeats")
    assert not lease_at(s3, url, "slow").expired(TTL)
    assert workers.computes(log) == ["slow:long"]  # the second process still waits
    stall.unlink()
    first.join(120)
    second.join(120)
    assert outcome(tmp_path / "o1")["value"] == outcome(tmp_path / "o2")["value"] == "long"
    assert workers.computes(log) == ["slow:long"]


@pytest.mark.parametrize("interface", ["npz", "auto"])
def test_a_paused_holder_that_lost_its_lease_does_not_overwrite_the_new_entry(
    s3: S3Server, folder: tuple[str, dict[str, Any]], tmp_path: Path, interface: str
) -> None:
    url, options = folder
    log, stall = tmp_path / "log", tmp_path / "stall"
    stall.touch()
    paused = spawn(workers.get_slow, url, options, TTL, str(log), "old", str(tmp_path / "o1"),
                   stall=str(stall), interface=interface)  # fmt: skip
    wait_for(lambda: Path(f"{stall}.pid").exists(), "the first holder to compute")
    os.kill(paused.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: lease_at(s3, url, "slow").expired(TTL), "the lease to expire")
        newer = spawn(workers.get_slow, url, options, TTL, str(log), "new", str(tmp_path / "o2"),
                      interface=interface)  # fmt: skip
        newer.join(120)
        assert outcome(tmp_path / "o2")["value"] == "new"
        stall.unlink()
    finally:
        os.kill(paused.pid, signal.SIGCONT)
    paused.join(120)
    old = outcome(tmp_path / "o1")
    # The paused holder still returns what it computed, and says it was not stored.
    assert old["value"] == "old"
    assert any("CacheWriteWarning" in w and "taken over" in w for w in old["warnings"])
    storage = AutoStorageInterface(url, storage_options=options)  # reads either format
    assert workers.decode(storage.load("slow")) == "new"
    assert storage.check().ok
    assert workers.computes(log) == ["slow:old", "slow:new"]


@pytest.mark.parametrize("skew", [-7200.0, 7200.0])
def test_leases_are_judged_by_the_servers_clock_not_the_clients(
    s3: S3Server, folder: tuple[str, dict[str, Any]], tmp_path: Path, skew: float
) -> None:
    """A client whose clock is hours off neither steals a live lease nor waits on a dead one."""
    url, options = folder
    held, release = tmp_path / "held", tmp_path / "release"
    log = tmp_path / "log"
    holder = spawn(workers.hold_name, url, options, TTL, "slow", str(held), str(release))
    wait_for(held.exists, "the holder")
    # Live for 3 TTLs by the heartbeat: the skewed client must wait, not take over.
    waiter = spawn(workers.get_slow, url, options, TTL, str(log), "skewed", str(tmp_path / "o"),
                   skew=skew)  # fmt: skip
    beats = lease_at(s3, url, "slow").body["beats"]
    wait_for(lambda: lease_at(s3, url, "slow").body["beats"] >= beats + 9, "9 heartbeats")
    assert workers.computes(log) == []
    # A holder that dies: the skewed client takes over once the server says it expired.
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(30)
    waiter.join(120)
    assert outcome(tmp_path / "o")["value"] == "skewed"
    assert workers.computes(log) == ["slow:skewed"]


# -- faults -----------------------------------------------------------------------------


@pytest.fixture
def proxy(s3: S3Server) -> Iterator[workers.FaultProxy]:
    proxy = workers.FaultProxy(s3.endpoint)
    try:
        yield proxy
    finally:
        proxy.close()


def _lease_put(condition: str) -> Callable[[str, str, dict[str, str]], bool]:
    def matches(method: str, path: str, headers: dict[str, str]) -> bool:
        return method == "PUT" and path.split("?")[0].endswith(".lease") and condition in headers

    return matches


def test_a_409_conflict_on_create_is_retried(
    s3: S3Server, proxy: workers.FaultProxy, s3_url: str
) -> None:
    locks = S3LeaseLocks(s3_url, proxy.storage_options(s3.storage_options()), ttl=TTL)
    proxy.add(_lease_put("if-none-match"), "conflict")
    with locks.hold("c", timeout=30):
        assert proxy.fired == ["conflict"]
        creates = [s for s in proxy.seen if _lease_put("if-none-match")(*s)]
        assert len(creates) == 2  # the answered 409, then the retry that won
        assert lease_at(s3, s3_url, "c").body["pid"] == os.getpid()
    assert lease_at(s3, s3_url, "c") is None


def test_a_409_conflict_on_a_renewal_keeps_the_lease(
    s3: S3Server, proxy: workers.FaultProxy, s3_url: str
) -> None:
    options = proxy.storage_options(s3.storage_options())
    locks = S3LeaseLocks(s3_url, options, ttl=TTL)
    with locks.hold("r"):
        proxy.add(_lease_put("if-match"), "conflict")
        wait_for(lambda: proxy.fired == ["conflict"], "the conflict on a heartbeat")
        beats = lease_at(s3, s3_url, "r").body["beats"]
        wait_for(lambda: lease_at(s3, s3_url, "r").body["beats"] > beats, "a later heartbeat")
        assert locks.still_held("r")
        other = S3LeaseLocks(s3_url, s3.storage_options(), ttl=TTL)
        with pytest.raises(LockTimeoutError), other.hold("r", timeout=0.2):
            pass


@pytest.mark.parametrize("condition", ["if-none-match", "if-match"])
def test_a_lease_write_whose_response_is_lost_is_still_ours(
    s3: S3Server, proxy: workers.FaultProxy, s3_url: str, condition: str
) -> None:
    """The client retries a PUT whose answer never came; its own write is then a 412."""
    options = proxy.storage_options(s3.storage_options())
    if condition == "if-match":  # a takeover: a lease of a holder that died, expired
        dead = {"owner": "ghost-1-0", "host": "ghost", "pid": 1, "ttl": 1, "beats": 0}
        bucket, _, prefix = s3_url.removeprefix("s3://").partition("/")
        LeaseIO(s3.filesystem(), bucket).create(f"{prefix}/{lease_key('l')}", dead)
        wait_for(lambda: lease_at(s3, s3_url, "l").expired(1), "the dead lease to expire")
    proxy.add(_lease_put(condition), "drop")
    locks = S3LeaseLocks(s3_url, options, ttl=TTL)
    with locks.hold("l", timeout=60):
        assert proxy.fired == ["drop"]
        assert lease_at(s3, s3_url, "l").body["pid"] == os.getpid()
        assert locks.still_held("l")
    assert lease_at(s3, s3_url, "l") is None


def test_a_value_computed_under_a_lost_lease_is_returned_not_stored(
    s3: S3Server, folder: tuple[str, dict[str, Any]]
) -> None:
    """The check before a commit: a lease someone took over stops the write."""
    url, options = folder
    locks = S3LeaseLocks(url, options, ttl=TTL)
    storage = NpzStorageInterface(url, storage_options=options, locks=locks)
    storage.save("x", np.arange(3))
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    io = LeaseIO(s3.filesystem(), bucket)
    CM = DatedCacheManager(storage, verbose=False)

    def steal() -> np.ndarray:
        while True:  # another client takes the lease over (between two heartbeats)
            lease = lease_at(s3, url, "x")
            with contextlib.suppress(Taken):
                io.replace(f"{prefix}/{lease_key('x')}", {**lease.body, "owner": "thief"},
                           lease.etag)  # fmt: skip
                return np.arange(5)

    CM.set_functions_dict({"x": steal})
    with pytest.warns(CacheWriteWarning, match="taken over"):
        value = CM.get("x", use_stored=False)
    assert value.tolist() == [0, 1, 2, 3, 4]
    assert storage.load("x").tolist() == [0, 1, 2]  # the stored entry is untouched
    assert lease_at(s3, url, "x").owner == "thief"  # the release left the new holder's lease


# -- which locks a remote store gets ----------------------------------------------------


def _dir_options(path: Path) -> dict[str, Any]:
    """A ``dir://`` filesystem over a local folder: shared by processes, no atomic create."""
    return {"path": str(path), "target_protocol": "file", "target_options": {"auto_mkdir": True}}


def test_each_remote_store_gets_the_locks_it_can_hold(
    s3: S3Server, s3_url: str, tmp_path: Path
) -> None:
    s3_storage = NpzStorageInterface(s3_url, storage_options=s3.storage_options())
    assert isinstance(s3_storage.lock_provider(), S3LeaseLocks)
    assert s3_storage.lock_provider().scope == s3_url  # type: ignore[attr-defined]
    assert isinstance(NpzStorageInterface("memory://leases").lock_provider(), ThreadLocks)
    store = FsspecStore(f"file://{tmp_path}")
    assert isinstance(locks_for(store), LocalLocks)
    dir_storage = NpzStorageInterface("dir://", storage_options=_dir_options(tmp_path))
    assert isinstance(dir_storage.lock_provider(), DaskOrThreadLocks)


def test_without_atomic_create_or_dask_one_warning_says_work_may_repeat(
    tmp_path: Path,
) -> None:
    storage = NpzStorageInterface("dir://", storage_options=_dir_options(tmp_path / "c"))
    CM = DatedCacheManager(storage, verbose=False)
    CM.set_functions_dict({"a": lambda: np.arange(3), "b": lambda: 2.5})
    with pytest.warns(SharedLockWarning, match="compute the same metric twice") as caught:
        assert CM.get("a").tolist() == [0, 1, 2]
        assert CM.get("b") == 2.5
        CM.get("a", use_stored=False)
    assert len(caught) == 1  # once per store, however many names
    again = DatedCacheManager(
        NpzStorageInterface("dir://", storage_options=_dir_options(tmp_path / "c")),
        verbose=False,
    )
    assert again.load("a").tolist() == [0, 1, 2] and again.load("b") == 2.5  # values correct
    assert storage.check().ok


def test_with_a_dask_client_the_fallback_locks_across_workers(
    dask_cluster: Any, tmp_path: Path
) -> None:
    distributed = pytest.importorskip("distributed")
    locks = DaskOrThreadLocks("gcs://bucket/cache")
    with distributed.Client(dask_cluster) as client:
        with locks.hold("m"):  # no warning: the scheduler's lock holds across workers
            answer = client.submit(workers.try_hold, locks, "m", 0.5, pure=False).result()
        assert answer.startswith("LockTimeoutError") and "Dask cluster" in answer
        assert client.submit(workers.try_hold, locks, "m", 5.0, pure=False).result() == "held"
        other = DaskOrThreadLocks("gcs://bucket/other")  # another store: another name
        with locks.hold("m"):
            assert client.submit(workers.try_hold, other, "m", 0.5, pure=False).result() == "held"


def test_an_uncontended_hold_costs_two_requests(
    s3: S3Server, proxy: workers.FaultProxy, s3_url: str
) -> None:
    locks = S3LeaseLocks(s3_url, proxy.storage_options(s3.storage_options()))  # ttl 30 s
    assert isinstance(locks, LockProvider)
    with locks.hold("cheap"):
        pass
    lease = [(m, p.split("?")[0]) for m, p, _ in proxy.seen if ".lease" in p]
    assert [m for m, _ in lease] == ["PUT", "DELETE"]  # create-only PUT, conditional DELETE
    assert [h for m, p, h in proxy.seen if m == "PUT"][0]["if-none-match"] == "*"
    assert "if-match" in [h for m, p, h in proxy.seen if m == "DELETE"][0]


def test_a_garbage_lease_object_is_waited_out_then_taken_over(s3: S3Server, s3_url: str) -> None:
    """Bytes that are no lease (hostile or torn): a holder of unknown TTL, never a crash."""
    fs = s3.filesystem()
    key = f"{s3_url}/{lease_key('g')}"
    fs.pipe_file(key, b"\x00not json{")
    locks = S3LeaseLocks(s3_url, s3.storage_options(), ttl=TTL)
    with pytest.raises(LockTimeoutError, match="lease \\?"), locks.hold("g", timeout=0.2):
        pass  # fresh by the server's clock: someone may hold it
    assert fs.cat_file(key) == b"\x00not json{"  # nothing changed while it was fresh
    with locks.hold("g", timeout=60):  # older than our TTL: taken over
        assert lease_at(s3, s3_url, "g").body["pid"] == os.getpid()
    assert not fs.exists(key)
