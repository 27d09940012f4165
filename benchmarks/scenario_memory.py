"""(a) Memory hit: the value was computed before in this process."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import numpy as np
from common import CallCounter, Config, DiskcacheMemo, Scratch, joblib_cached, quiet_manager
from harness import Contender, Table, Target, measure

from metricache import NpyStorageInterface, ParameterizedDatedCacheManager

BASELINE = "lru_cache call"


def run(config: Config, scratch: Scratch) -> Iterator[Table]:
    value = np.arange(128.0)  # 1 KiB: small enough for every cache's fast path

    counter = CallCounter()
    hit = counter.wrap(value, "hit")

    def param(i: int) -> np.ndarray:
        return value + i

    manager = quiet_manager(NpyStorageInterface(scratch.folder("memory-mc")))
    manager.collect(hit)
    manager.get("hit")
    family = ParameterizedDatedCacheManager(
        NpyStorageInterface(scratch.folder("memory-mcp")), verbose=False
    )
    family.collect(param, params_list=[[i] for i in range(4)])
    family.param(3)
    lru = functools.lru_cache(maxsize=None)(hit)
    plain = {"hit": value}
    joblib_hit = joblib_cached(scratch.folder("memory-joblib"), hit)
    joblib_hit()
    memo = DiskcacheMemo(scratch.folder("memory-diskcache"), hit)
    memo.reopen()
    memo.call()
    namespace = {"CM": manager, "CMP": family, "lru": lru, "d": plain}
    namespace |= {"memo": memo.call, "joblib_hit": joblib_hit}
    contenders = [
        Contender.statement(BASELINE, "lru()", namespace),
        Contender.statement("dict lookup", "d['hit']", namespace),
        Contender.statement("metricache CM.get(name)", "CM.get('hit')", namespace),
        Contender.statement("metricache CM[name]", "CM['hit']", namespace),
        Contender.statement("metricache CM.metric()", "CM.hit()", namespace),
        Contender.statement(
            "metricache CM.metric(3)",
            "CMP.param(3)",
            namespace,
            note="parameterized: a declared parameter set (no target)",
        ),
        Contender.statement(
            "diskcache memoize", "memo()", namespace, note="SQLite lookup + unpickle per call"
        ),
        Contender.statement(
            "joblib.Memory", "joblib_hit()", namespace, note="no memory tier: every hit reads disk"
        ),
    ]
    rows = measure(contenders, config.memory_rounds, min_time=config.min_time)
    memo.close()
    if counter.calls != 4:  # once per cache above; a hit must not compute
        raise RuntimeError(f"memory hits computed: {counter.calls} calls, expected 4")
    yield Table(
        "(a) memory hit, 1 KiB array already computed in this process",
        rows,
        BASELINE,
        targets=[
            Target("metricache CM.get(name)", 2.0),
            Target("metricache CM[name]", 2.0),
            Target("metricache CM.metric()", 3.0),
        ],
        notes=[
            "timeit-style: the call statement compiled into a loop of up to 10,000 calls "
            "per sample, garbage collector off"
        ],
    )
