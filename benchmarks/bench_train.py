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
