"""CUDA backend of training: the sampled loss gradient and Adam on a GPU."""

from __future__ import annotations

import time

import numpy as np

from fastsuper.core import config
from fastsuper.core import validation as v
from fastsuper.core.bundles import InputLaw, activation
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
    instance_keys,
    show_progress,
    stacked_law,
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


def _law_to_device(cuda, law: InputLaw) -> InputLaw:
    """``law`` with its arrays in device memory (float64, or int64 for the group tables)."""
    ints = ("gptr", "gmem", "gkind")
    return law._replace(**{
        f: cuda.to_device(np.ascontiguousarray(getattr(law, f),
                                               dtype=np.int64 if f in ints else np.float64))
        for f in ("pmax", "log1mp", "p", "support", "cum", "tlo", "thi", "gq", "gval") + ints
    }, thin=cuda.to_device(np.ascontiguousarray(law.thin)))  # fmt: skip


def fit_adam_cuda(W, B, P, imp, law, settings: dict, progress: bool = False):
    """Adam training of ``fit(..., backend="cuda")``: sampling, gradients and updates on the GPU.

    Validated arguments come from :func:`fastsuper.fit`, which is the public
    entry point.  Step ``t`` of instance ``k`` draws samples ``t *
    batch_size .. (t + 1) * batch_size - 1`` of seed
    :func:`~fastsuper.train.adam.instance_seed` ``(seed, k)`` (the CPU's
    samples) and adds their gradients in sample order with the CPU's
    per-sample formulas; the float64 Adam update is the CPU kernel's
    formula.  The trajectory therefore equals ``fit(..., backend="cpu")``'s
    up to float round-off in the gradient sums.  One launch of
    :func:`kernels_cuda.train_kernel` runs ``config.CUDA_TRAIN_STEPS`` steps
    of every instance (a thread block per instance, the weights and Adam's
    moments staying in device memory), so the GPU is not bound by launches;
    many instances fill it.

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
    from fastsuper.train.kernels_cpu import OK

    cuda, kc = _kernels()
    n_inst, d, n = W.shape
    dtype = W.dtype
    seed, steps, batch_size = settings["seed"], settings["steps"], settings["batch_size"]
    lr, eps, log_every = settings["lr"], settings["eps"], settings["log_every"]
    beta1, beta2 = float(settings["betas"][0]), float(settings["betas"][1])
    model = Model(W[0], B[0], activation=settings["activation"], exponent=settings["exponent"],
                  param=settings.get("param"))  # fmt: skip
    fit_inputs = SparseInputs(n, p=P[0], values=law, **settings.get("groups", {}))
    laws = _law_to_device(cuda, stacked_law(P, law, fit_inputs))
    skeys = instance_keys(seed, n_inst)
    n_log = (steps + log_every - 1) // log_every
    dev = {name: cuda.to_device(a) for name, a in (
        ("W", W), ("B", B), ("imp", np.ascontiguousarray(imp, dtype=np.float64)),
        ("imp2", np.ascontiguousarray(2.0 * imp, dtype=dtype)), ("skeys", skeys),
        ("hist", np.full((n_log, n_inst), np.nan)), ("status", np.full(n_inst, OK, np.int64)),
    )}  # fmt: skip
    zeros = {name: cuda.to_device(np.zeros(shape, dtype=dt)) for name, shape, dt in (
        ("mW", (n_inst, d, n), np.float64), ("vW", (n_inst, d, n), np.float64),
        ("mb", (n_inst, n), np.float64), ("vb", (n_inst, n), np.float64),
        ("idx", (n_inst, n), np.int64), ("val", (n_inst, n), dtype),
        ("h", (n_inst, d), dtype), ("g", (n_inst, n), dtype), ("u", (n_inst, d), dtype),
        ("lt", (n_inst, n), np.float64), ("gW", (n_inst, d, n), np.float64),
        ("gb", (n_inst, n), np.float64), ("k", n_inst, np.int64),
    )}  # fmt: skip
    threads = max(1, min(int(config.GRAD_THREADS), max(n, d)))
    grid = launch_grid(cuda, n_inst, 1)
    per_launch = max(1, int(config.CUDA_TRAIN_STEPS))
    if progress:
        per_launch = min(per_launch, max(1, steps // 20))
    bar = progress_bar(steps, "fit", unit="steps", enabled=progress)
    t0 = time.perf_counter()
    for lo in range(0, steps, per_launch):
        kc.train_kernel[grid, threads](
            dev["W"], dev["B"], zeros["mW"], zeros["vW"], zeros["mb"], zeros["vb"], dev["imp"],
            dev["imp2"], settings["bias"], activation(model), dtype.type(0), dev["skeys"], laws,
            lo, min(per_launch, steps - lo), batch_size, (lr, beta1, beta2, eps), log_every,
            dev["hist"], dev["status"], zeros["idx"], zeros["val"], zeros["h"], zeros["g"],
            zeros["u"], zeros["lt"], zeros["gW"], zeros["gb"], zeros["k"],
        )  # fmt: skip
        if progress:
            show_progress(bar, min(steps, lo + per_launch), dev["hist"].copy_to_host(), log_every)
    hist = dev["hist"].copy_to_host()
    status = dev["status"].copy_to_host()
    W[...] = dev["W"].copy_to_host()
    B[...] = dev["B"].copy_to_host()
    bar.close()
    return hist, status, time.perf_counter() - t0
