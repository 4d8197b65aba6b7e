"""CUDA backend of training: the sampled loss gradient and Adam on a GPU."""

from __future__ import annotations

import math
import time

import numpy as np

from fastsuper.core import config
from fastsuper.core import validation as v
from fastsuper.core.bundles import activation
from fastsuper.core.cuda import launch_grid, quiet_launch, require_cuda
from fastsuper.core.laws import SparseInputs
from fastsuper.core.model import Model
from fastsuper.core.progress import progress_bar
from fastsuper.mc.cuda import DeviceInputs, chunk_samples, draw_chunk
from fastsuper.train.common import (
    SampledLossGrad,
    check_block_losses,
    check_gradient,
    check_model_inputs,
    instance_seed,
    show_progress,
)

__all__ = ["fit_adam_cuda", "loss_grad_cuda"]


def _kernels():
    """numba.cuda and the training kernels (the samples come from :func:`draw_chunk`)."""
    cuda = require_cuda()
    from fastsuper.train import kernels_cuda

    return cuda, kernels_cuda


@quiet_launch
def loss_grad_cuda(
    model: Model, inputs: SparseInputs, n_samples: int = 100_000, seed: int = 0, *,
    start: int = 0, block_size: int | None = None,
):  # fmt: skip
    """Sampled loss and gradient on the GPU (``loss_grad(..., backend="cuda")``).

    The samples of :func:`fastsuper.train.adam.loss_grad` (drawn on the device
    by the sampler kernels), the CPU's per-sample formulas and its sum
    order: :func:`kernels_cuda.grad_kernel` runs one CUDA thread block per
    block of ``block_size`` samples (its threads over features and hidden
    units), summing the block's samples in order into its own float64
    partial gradient in device memory; the partial sums are then added on
    the host in block order (:func:`kernels_cpu_train.merge_blocks`), as the
    CPU does.  The result equals the CPU's to float round-off (the
    CPU kernels may fuse multiply-adds, and for ``d > 4`` they add the
    encoder terms in a separate accumulator).

    Parallelism is ``min(config.GRAD_THREADS, max(n, d))`` threads per sample
    block: for large runs use a ``block_size`` small enough to give the GPU
    many blocks.

    Parameters and result: those of :func:`fastsuper.train.adam.loss_grad`
    (``block_size=None`` means :data:`fastsuper.train.adam.DEFAULT_BLOCK`).

    Raises
    ------
    FloatingPointError
        If the loss of a sample, or the gradient, is not finite.
    RuntimeError
        If CUDA is unavailable.
    """
    from fastsuper.train.kernels_cpu import merge_blocks

    cuda, kc = _kernels()
    check_model_inputs(model, inputs)
    n_samples = v.check_int("n_samples", n_samples, minimum=1)
    seed = v.check_int("seed", seed)
    start = v.check_int("start", start, minimum=0)
    if block_size is None:
        block_size = config.GRAD_BLOCK
    block = v.check_int("block_size", block_size, minimum=1)
    dtype = np.dtype(model.dtype)
    act = activation(model)
    d, n = model.d, model.n
    W_d = cuda.to_device(np.ascontiguousarray(model.W))
    b_d = cuda.to_device(np.ascontiguousarray(model.bias, dtype=dtype))
    imp = np.ascontiguousarray(inputs.importance, dtype=np.float64)
    imp_d = cuda.to_device(imp)
    imp2_d = cuda.to_device((2.0 * imp).astype(dtype))
    dev = DeviceInputs(cuda, inputs)
    seed_u64 = np.uint64(seed & ((1 << 64) - 1))
    per_sample = dev.bytes_per_sample(dtype.itemsize)
    per_block = 8 * (d * n + 2 * n + 3) + dtype.itemsize * (2 * d + n)
    chunk = chunk_samples(block, per_sample + -(-per_block // block))
    threads = max(1, min(int(config.GRAD_THREADS), max(n, d)))
    tot_gW = np.zeros((d, n))
    tot_gb = np.zeros(n)
    loss_sum = 0.0
    for lo in range(0, n_samples, chunk):
        ns = min(chunk, n_samples - lo)
        nbc = -(-ns // block)
        _, indptr_d, indices_d, values_d = draw_chunk(cuda, dev, seed_u64, start + lo, ns, dtype)
        gW = cuda.to_device(np.zeros((nbc, d, n)))
        gb = cuda.to_device(np.zeros((nbc, n)))
        loss = cuda.device_array(nbc, dtype=np.float64)
        bad = cuda.device_array((nbc, 2), dtype=np.float64)
        hbuf = cuda.device_array((nbc, d), dtype=dtype)
        ubuf = cuda.device_array((nbc, d), dtype=dtype)
        gbuf = cuda.device_array((nbc, n), dtype=dtype)
        lbuf = cuda.device_array((nbc, n), dtype=np.float64)
        kc.grad_kernel[launch_grid(cuda, nbc, 1), threads](
            W_d,
            b_d,
            imp_d,
            imp2_d,
            act,
            dtype.type(0),
            block,
            ns,
            start + lo,
            indptr_d,
            indices_d,
            values_d,
            hbuf,
            gbuf,
            ubuf,
            lbuf,
            loss,
            bad,
            gW,
            gb,
        )
        check_block_losses(bad.copy_to_host(), model, seed)
        loss_sum += merge_blocks(
            loss.copy_to_host(), gW.copy_to_host(), gb.copy_to_host(), tot_gW, tot_gb
        )
    check_gradient(model, loss_sum / n_samples, tot_gW, tot_gb)
    inv = 1.0 / n_samples
    return SampledLossGrad(loss_sum * inv, tot_gW * inv, tot_gb * inv)


def fit_adam_cuda(W, B, P, imp, law, settings: dict, progress: bool = False):
    """Adam training of ``fit(..., backend="cuda")``: gradients on the GPU, updates on the host.

    Validated arguments come from :func:`fastsuper.fit`, which is the public
    entry point.  Step ``t`` of instance ``k`` draws samples ``t *
    batch_size .. (t + 1) * batch_size - 1`` of seed
    :func:`~fastsuper.train.adam.instance_seed` ``(seed, k)`` and computes the
    batch's loss and gradient with :func:`loss_grad_cuda` (the CPU's samples
    and per-sample formulas); the float64 Adam update is the CPU kernel's
    (:func:`fastsuper.train.kernels_cpu.adam_update`).  The trajectory
    therefore equals ``fit(..., backend="cpu")``'s up to float round-off in
    the gradient sums.  Instances are trained one after the other, one
    kernel launch per step: a GPU pays off for large ``n``, ``d`` and
    ``batch_size``.

    Parameters
    ----------
    W, B : ndarray
        Initial weights (n_instances, d, n) and bias (n_instances, n) in the
        compute dtype; updated in place.
    P, imp : ndarray of shape (n_instances, n)
        Feature probabilities and importances.
    law : ValueLaw
        Law of an active feature's value.
    settings : dict
        The checked arguments of :func:`fastsuper.fit` (``activation``,
        ``exponent``, ``bias``, ``seed``, ``steps``, ``batch_size``, ``lr``,
        ``betas``, ``eps``, ``log_every``: the settings of its result).
    progress : bool, default False
        As in :func:`fastsuper.fit`.

    Returns
    -------
    hist : ndarray of shape (ceil(steps / log_every), n_instances)
        Batch loss (mean over samples and features) every ``log_every`` steps.
    status : ndarray of int64
        ``-1`` per instance, or the step at which its loss or gradient stopped
        being finite (training of that instance stopped there).
    elapsed : float
        Wall time in seconds.
    """
    from fastsuper.train.kernels_cpu import OK, adam_update

    require_cuda()
    n_inst, d, n = W.shape
    activation, exponent, bias = settings["activation"], settings["exponent"], settings["bias"]
    seed, steps, batch_size = settings["seed"], settings["steps"], settings["batch_size"]
    lr, eps, log_every = settings["lr"], settings["eps"], settings["log_every"]
    beta1, beta2 = float(settings["betas"][0]), float(settings["betas"][1])
    n_log = (steps + log_every - 1) // log_every
    hist = np.full((n_log, n_inst), np.nan)
    status = np.full(n_inst, OK, dtype=np.int64)
    total = steps * n_inst
    bar = progress_bar(total, "fit", unit="steps", enabled=progress)
    t0 = time.perf_counter()
    for k in range(n_inst):
        pk = P[k]
        inputs = SparseInputs(
            n, p=float(pk[0]) if np.all(pk == pk[0]) else pk, values=law, importance=imp[k],
            **settings.get("groups", {}),
        )  # fmt: skip
        skey = instance_seed(seed, k)
        mW = np.zeros((d, n))
        vW = np.zeros((d, n))
        mb = np.zeros(n)
        vb = np.zeros(n)
        scale = 1.0 / n  # loss_grad_cuda averages over samples; fit's loss also over features
        for t in range(steps):
            model = Model(
                W[k],
                B[k] if bias else None,
                activation=activation,
                exponent=exponent,
                param=settings.get("param"),
            )
            try:
                loss, gW, gb = loss_grad_cuda(model, inputs, batch_size, skey, start=t * batch_size)
            except FloatingPointError:
                status[k] = t
                break
            if t % log_every == 0:
                hist[t // log_every, k] = loss * scale
            step = np.float64(t + 1)
            step_size = lr / (1.0 - beta1**step)
            bc2s = math.sqrt(1.0 - beta2**step)
            adam_update(W[k], mW, vW, gW, scale, step_size, bc2s, beta1, beta2, eps)
            if bias:
                adam_update(B[k], mb, vb, gb, scale, step_size, bc2s, beta1, beta2, eps)
            if progress and (t + 1) % max(1, steps // 20) == 0:
                show_progress(bar, k * steps + t + 1, hist, log_every)
    bar.close()
    return hist, status, time.perf_counter() - t0
