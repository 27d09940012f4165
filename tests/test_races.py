"""Delete, rewrite and load racing on one name, in real processes: never a wrong value.

Two deleters (half of their deletes without the name's lock), three rewriters and
five readers (``load`` and ``verify``) share one name for a bounded time; every
value read must be exactly one that was written, and every failure "not stored",
never corruption or a raw OS error. ``METRICACHE_STRESS=1`` runs it for a minute.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest

from metricache import NpzStorageInterface
from metricache.exceptions import MetricNotStoredError

from ._entrybytes import Slot
from ._race_workers import VALUES, is_one_of_values, race_role

#: The safety properties hold in both homes: one file per entry, and packed.
pytestmark = pytest.mark.usefixtures("home")

STRESS = os.environ.get("METRICACHE_STRESS") == "1"
SECONDS = 60.0 if STRESS else 4.0
ROLES = ["deleter"] * 2 + ["writer"] * 3 + ["reader"] * 5


@pytest.mark.stress
@pytest.mark.timeout(SECONDS * 3 + 60)
def test_delete_rewrite_and_load_races_never_give_a_wrong_value(tmp_path: Path) -> None:
    NpzStorageInterface(tmp_path).save("m", VALUES[0])
    ctx = multiprocessing.get_context("spawn")
    outs = [tmp_path.parent / f"{tmp_path.name}-{i}.json" for i in range(len(ROLES))]
    procs = [
        ctx.Process(target=race_role, args=(role, str(tmp_path), SECONDS, str(out), i))
        for i, (role, out) in enumerate(zip(ROLES, outs, strict=True))
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(SECONDS + 60)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]  # no hang
    reports = [json.loads(out.read_text()) for out in outs]
    total = {k: sum(r["counts"][k] for r in reports) for k in reports[0]["counts"]}
    problems = [w for r in reports for w in r["wrong"]]
    assert total["wrong"] == 0, problems
    assert total["corrupt"] == 0, problems
    assert total["os_error"] == 0, problems
    readers = [r["counts"] for r, role in zip(reports, ROLES, strict=True) if role == "reader"]
    assert sum(c["good"] for c in readers) > 50  # the race really ran
    assert sum(c["not_stored"] for c in readers) > 0


def test_data_left_by_a_delete_racing_a_writer_is_not_read_hint_less(tmp_path: Path) -> None:
    # The old symptom: the writer's record removed by a delete after the writer
    # published it and before it committed its data; the data, without any record,
    # was read as a legacy file: 2**70 came back as array('400000...', dtype='<U18').
    storage = NpzStorageInterface(tmp_path)
    storage.save("m", 2**70)
    slot = Slot(tmp_path, "m.npz")
    packed, data = slot.packed(), slot.read_bytes()
    storage.delete("m")
    slot.commit_bytes(data, packed)  # the commit that landed after the delete
    with pytest.raises(MetricNotStoredError):
        storage.load("m")
    assert storage.info("m") is None
    storage.save("m", np.arange(3))  # the next write replaces the left-over data
    np.testing.assert_array_equal(storage.load("m"), np.arange(3))


def test_the_marker_does_not_hide_real_legacy_files(tmp_path: Path) -> None:
    np.save(tmp_path / "old.npy", np.arange(3))  # the seed's file, no record ever
    storage = NpzStorageInterface(tmp_path)
    assert storage.delete("other") is False
    assert not list((tmp_path).glob(".metricache/meta/*/*.gone"))  # nothing to mark
    values = [is_one_of_values(v) for v in VALUES]
    assert all(values)
