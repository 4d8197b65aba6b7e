"""The command line with ``--backend cuda``."""

import numpy as np
import pytest
from cudatools import cuda_or_skip

import fastsuper as fs

cuda = cuda_or_skip()

pytestmark = [pytest.mark.cudasim, pytest.mark.usefixtures("small_cuda_launches")]


def test_cli_backend_cuda(tmp_path, capsys):
    """``fastsuper estimate --backend cuda`` and ``train --backend cuda`` give the CPU's numbers."""
    import json

    from fastsuper.apps.cli import main

    res = {}
    for bk in ("cpu", "cuda"):
        out = tmp_path / f"{bk}.json"
        argv = ["estimate", "--n", "12", "--d", "3", "--p", "0.2", "--samples", "300"]
        assert main([*argv, "--backend", bk, "--json", str(out)]) == 0
        res[bk] = json.loads(out.read_text())
    assert res["cuda"]["loss_mc"] == pytest.approx(res["cpu"]["loss_mc"], rel=1e-12)
    fits = {}
    for bk in ("cpu", "cuda"):
        argv = ["train", "--n", "5", "--d", "2", "--instances", "1", "--steps", "3", "--batch"]
        argv += ["16", "--no-plots", "--quiet", "--out", str(tmp_path / bk), "--backend", bk]
        assert main(argv) == 0
        fits[bk] = fs.FitResult.load(tmp_path / f"{bk}.npz")
    np.testing.assert_allclose(fits["cuda"].W, fits["cpu"].W, rtol=1e-10, atol=1e-12)
    assert main(["train", "--method", "exact", "--backend", "cuda", "--out", "x"]) == 2
    assert "applies to --method adam" in capsys.readouterr().err
