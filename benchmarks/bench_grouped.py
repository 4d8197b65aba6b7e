"""asv benchmarks: sampling grouped input laws beside the independent law of the same E K.

n = 1000 features with Gaussian values; each grouped law has groups of 10
features and the same expected number of active features as the independent
law ``p`` (``E K = 1000 p``): correlated (gate ``q = p``), exclusive (``q = 10 p``),
partial (``r = 1/2``, ``q = 2 p``), and correlated with interleaved groups
(members 100 apart, so every sample is sorted after it is drawn).
"""

from __future__ import annotations

import time

import numpy as np

import fastsuper as fs

N = 1000
SIZE = 10
SAMPLES = 200_000
REPEATS = 3
LAWS = ["independent", "correlated", "exclusive", "partial", "interleaved"]


def grouped_inputs(law: str, p: float) -> fs.SparseInputs:
    """The law ``law`` on N features with ``E K = N p``."""
    blocks = [np.arange(g * SIZE, (g + 1) * SIZE) for g in range(N // SIZE)]
    if law == "independent":
        return fs.SparseInputs(N, p=p)
    if law == "correlated":
        return fs.SparseInputs(N, groups=blocks, q=p)
    if law == "exclusive":
        return fs.SparseInputs(N, groups=blocks, q=SIZE * p, kind="exclusive")
    if law == "partial":
        return fs.SparseInputs(N, groups=blocks, q=2 * p, kind="partial", r=0.5)
    return fs.SparseInputs(N, groups=np.arange(N) % (N // SIZE), q=p)  # interleaved


class GroupedSample:
    """``sample`` of grouped laws and of the independent law with the same ``E K``."""

    params = (LAWS, [0.001, 0.01])
    param_names = ["law", "p"]

    def setup(self, law, p):
        self.inputs = grouped_inputs(law, p)
        assert abs(self.inputs.expected_active - N * p) < 1e-9 * N
        fs.sample(self.inputs, 1000, seed=0)

    def _run(self):
        return fs.sample(self.inputs, SAMPLES, seed=1)

    def time_sample(self, law, p):
        self._run()

    def track_samples_per_second(self, law, p):
        best = np.inf
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            self._run()
            best = min(best, time.perf_counter() - t0)
        return SAMPLES / best

    track_samples_per_second.unit = "samples/s"
