"""asv benchmarks of ``fit`` (Adam) at the configurations of Elhage et al.'s toy models.

ReLU with bias, U[0, 1] values, ``p = 50**-linspace(0, 1, I)`` per instance,
importance ``0.9**arange(n)``, batch 1024; a few steps each, float64 and
float32.  ``scripts/compare_torch_train.py`` measures the PyTorch peer on the
same configurations.
"""

from __future__ import annotations

import numpy as np

import fastsuper as fs

#: (n, d, instances, steps timed)
CONFIGS = {"n5_d2_I8": (5, 2, 8, 200), "n100_d20_I10": (100, 20, 10, 30),
           "n400_d30_I100": (400, 30, 100, 2)}  # fmt: skip


class FitElhage:
    """``fit`` steps per configuration and dtype (the time of a fixed number of steps)."""

    params = (list(CONFIGS), ["float64", "float32"])
    param_names = ["config", "dtype"]
    timeout = 600
    number = 1
    repeat = (1, 3, 60.0)

    def setup(self, config, dtype):
        n, d, inst, self.steps = CONFIGS[config]
        self.n, self.d = n, d
        p = 50.0 ** -np.linspace(0.0, 1.0, inst)
        imp = 0.9 ** np.arange(n)
        self.kw = dict(n_instances=inst, p=p, importance=imp, dtype=np.dtype(dtype), progress=False)
        fs.fit(n, d, steps=1, **self.kw)  # compile (or load the cache)

    def time_fit(self, config, dtype):
        fs.fit(self.n, self.d, steps=self.steps, **self.kw)


class SparseRows:
    """The sparse-input loops of a training sub-batch (``fastsuper.core.sparse_rows``) beside
    the dense product they replace: 1024 rows of n = 100 features, d = 20."""

    params = ([0.42, 0.27, 0.11], ["float64", "float32"])
    param_names = ["p", "dtype"]

    def setup(self, p, dtype):
        from fastsuper.core.sparse_rows import compact_rows, padded_columns

        rng = np.random.default_rng(0)
        n, d, rows = 100, 20, 1024
        dt = np.dtype(dtype)
        self.X = np.where(rng.random((rows, n)) < p, rng.random((rows, n)), 0.0).astype(dt)
        self.ptr = np.zeros(rows + 1, dtype=np.int64)
        self.idx = np.zeros(rows * n + 8, dtype=np.int64)
        compact_rows(self.X, rows, self.ptr, self.idx)
        width = padded_columns(d, dt.itemsize)
        self.M = np.zeros((n, width), dtype=dt)
        self.M[:, :d] = rng.standard_normal((n, d))
        self.Wt = np.ascontiguousarray(self.M[:, :d])
        self.H = np.empty((rows, d), dtype=dt)
        self.U = rng.standard_normal((rows, d)).astype(dt)
        self.T = np.zeros((n, width), dtype=dt)
        self.rows, self.d = rows, d
        self.time_gather(p, dtype)  # compile (or load the cache)
        self.time_scatter(p, dtype)

    def time_compact(self, p, dtype):
        from fastsuper.core.sparse_rows import compact_rows

        compact_rows(self.X, self.rows, self.ptr, self.idx)

    def time_gather(self, p, dtype):
        from fastsuper.core.sparse_rows import gather_rows

        gather_rows(self.ptr, self.idx, self.X, self.M, self.H, self.rows, self.d)

    def time_scatter(self, p, dtype):
        from fastsuper.core.sparse_rows import scatter_rows

        scatter_rows(self.ptr, self.idx, self.X, self.U, self.T, self.rows, self.d)

    def time_dense_product(self, p, dtype):
        from fastsuper.core.blas import blas_threads

        with blas_threads(1):  # as in training: one BLAS thread per kernel thread
            np.dot(self.X, self.Wt, self.H)


class GramSpace:
    """One instance of n = 100, d = 20 with few active features, trained in the Gram space
    (``z = W^T W x``, ``dW = W (S + S^T)``) or, with ``config.TRAIN_GRAM_ACTIVE = 0``, with
    the sub-batch products and sparse-row loops: 20 steps of batch 1024."""

    params = ([0.11, 0.02], ["float64", "float32"], [True, False])
    param_names = ["p", "dtype", "gram"]
    number = 1
    repeat = (1, 5, 30.0)

    def setup(self, p, dtype, gram):
        from fastsuper.core import config

        self.saved = config.TRAIN_GRAM_ACTIVE
        if not gram:
            config.TRAIN_GRAM_ACTIVE = 0.0
        self.kw = dict(p=p, importance=0.9 ** np.arange(100), dtype=np.dtype(dtype),
                       progress=False)  # fmt: skip
        fs.fit(100, 20, steps=1, **self.kw)  # compile (or load the cache)

    def teardown(self, p, dtype, gram):
        from fastsuper.core import config

        config.TRAIN_GRAM_ACTIVE = self.saved

    def time_fit(self, p, dtype, gram):
        fs.fit(100, 20, steps=20, **self.kw)
