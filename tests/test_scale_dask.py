"""A cells table partitioned in a dask.dataframe, solved on a LocalCluster: the same plan as locally."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from allocator.scale_dask import solve_dask, solve_partitions
from allocator.tables import plan_from_table, random_cells_table, write_cells_table

distributed = pytest.importorskip("distributed")
dd = pytest.importorskip("dask.dataframe")

N = 200_000
SCENARIO = {"name": "dask", "budget": {"total": 1.5e7}}


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  memory_limit="1GiB") as cluster, distributed.Client(cluster) as c:
        yield c


def _read_parts(folder):
    files = sorted((folder / "plan").glob("part-*.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def test_dask_and_local_plans_are_identical(client, tmp_path):
    df = random_cells_table(N, seed=21)
    cells = tmp_path / "cells"
    cells.mkdir()
    pieces = [df.iloc[i:i + N // 4] for i in range(0, N, N // 4)]
    for k, piece in enumerate(pieces):
        write_cells_table(piece, cells / f"part-{k}.parquet")
    ddf = dd.read_parquet(str(cells))      # one partition per file, in file order
    assert ddf.npartitions == 4
    local = solve_partitions(SCENARIO, pieces, tmp_path / "local")
    remote = solve_dask(SCENARIO, ddf, client, tmp_path / "dask")
    assert remote.marginal_return == local.marginal_return
    assert remote.total_spend == local.total_spend and remote.net_value == local.net_value
    a, b = _read_parts(tmp_path / "local"), _read_parts(tmp_path / "dask")
    pd.testing.assert_frame_equal(a, b)
    # and the whole table solved in one process by the exact solver gives the same plan
    whole = plan_from_table(SCENARIO, df)
    assert whole.result.solver == "exact"
    np.testing.assert_allclose(b["spend"].to_numpy(), whole.spend, rtol=1e-9, atol=1e-9)
    assert remote.optimality_gap <= 1e-9
    assert b["spend"].sum() == pytest.approx(1.5e7, rel=1e-12)
