"""Throughput of fastsuper's CUDA Monte-Carlo loss and training kernels, against the card's peaks.

Usage (on a machine with an NVIDIA GPU and numba-cuda)::

    python scripts/gpu_bench.py                  # n=1000, d=64, p=0.01, relu^2, U[0,1]
    python scripts/gpu_bench.py --kernel train   # sampled loss + gradient (training)
    python scripts/gpu_bench.py --n 6000 --d 15 --p 1e-3 --activation power --exponent 3 \\
        --values gaussian --samples 20000000
    python scripts/gpu_bench.py --path dense --dtype float32 --check

Prints samples per second end to end (``estimate_loss_cuda``: sampling, the
fused loss kernel, the per-block Welford statistics, transfers) and of each
stage (timed with CUDA events on one chunk), and the fraction of the card's
peak FLOP/s and DRAM bandwidth that the loss kernel reaches under this cost
model (K = expected number of active features, s = bytes per value):

* FLOPs per sample (a multiply-add counts 2):
  columns path ``2 n K`` (``z = b + sum_q A[i_q, :] x_q``), dense path
  ``2 d K + 2 d n`` (``h = W x``, ``z = W^T h + b``); plus ``n (c_phi + 3)``
  for the activation and the loss terms and ``8 K`` for the active entries'
  corrections.  ``c_phi`` is the number of multiplies of the activation
  (repeated squaring for integer exponents, 20 for ``pow``).
* Bytes per sample, counting every operand once as if nothing were reused
  from cache: columns ``K n s`` (K rows of A), dense ``d n s`` (all of W);
  plus the CSR input ``K (4 + s) + 8`` and the outputs ``16``.  A or W is
  often resident in L2, so the DRAM fraction is an upper bound of the real
  DRAM traffic (it can exceed 100%).

* Training (``--kernel train``: :func:`fastsuper.train.cuda.loss_grad_cuda`,
  the gradient kernel of ``fit(backend="cuda")``), per sample:
  ``2 d K`` (``h = W x``) ``+ 2 d n`` (``z``) ``+ 2 d n`` (decoder term
  ``h g^T``) ``+ 2 d n`` (``u = W g``) ``+ 2 d K`` (encoder term) FLOPs plus
  ``n (2 c_phi + 8)`` for the activation, its derivative and the loss; bytes
  ``3 d n s`` (W read three times) plus ``16 d n`` (the float64 partial
  gradient read and written), again without reuse.  Also prints Adam steps
  per second of ``fit(..., backend="cuda")`` at the same size with
  ``--instances`` instances (one thread block each, many steps per launch),
  beside the CPU's ``fit`` on the same problem.

Peaks come from the device attributes (SM count, SM clock, memory clock and
bus width) and a table of FP32/FP64 lanes per SM by compute capability
(non-tensor-core rates); override them with ``--peak-tflops``/``--peak-gbs``.

Without a GPU (or under ``NUMBA_ENABLE_CUDASIM=1``) the script prints why and
exits with status 0.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

#: FMA lanes per SM (FP32, FP64) by compute capability, non-tensor-core
FMA_LANES = {
    (6, 0): (64, 32),
    (7, 0): (64, 32),
    (7, 5): (64, 2),
    (8, 0): (64, 32),
    (8, 6): (128, 2),
    (8, 7): (128, 2),
    (8, 9): (128, 2),
    (9, 0): (128, 64),
    (10, 0): (128, 64),
    (12, 0): (128, 2),
}


def _skip(reason: str) -> None:
    print(f"gpu_bench: skipped: {reason}")
    sys.exit(0)


def _attr(dev, name):
    try:
        return int(getattr(dev, name))
    except Exception:
        return None


def device_peaks(cuda, peak_tflops=None, peak_gbs=None) -> dict:
    """Name, attributes and peak FP32/FP64 FLOP/s and DRAM bandwidth of the current GPU."""
    dev = cuda.get_current_device()
    name = getattr(dev, "name", "simulator")
    name = name.decode() if isinstance(name, bytes) else str(name)
    cc = tuple(dev.compute_capability)
    sms = _attr(dev, "MULTIPROCESSOR_COUNT")
    clock_khz = _attr(dev, "CLOCK_RATE")
    mem_khz = _attr(dev, "MEMORY_CLOCK_RATE")
    bus_bits = _attr(dev, "GLOBAL_MEMORY_BUS_WIDTH")
    lanes = FMA_LANES.get(cc) or FMA_LANES.get((cc[0], 0))
    out = dict(name=name, cc=cc, sms=sms, clock_ghz=None, mem_clock_ghz=None, bus_bits=bus_bits)
    out["peak_flops"] = {"float32": None, "float64": None}
    if sms and clock_khz and lanes:
        out["clock_ghz"] = clock_khz / 1e6
        for dt, ln in zip(("float32", "float64"), lanes):
            out["peak_flops"][dt] = 2.0 * ln * sms * clock_khz * 1e3
    out["peak_bw"] = None
    if mem_khz and bus_bits:
        out["mem_clock_ghz"] = mem_khz / 1e6
        out["peak_bw"] = 2.0 * mem_khz * 1e3 * bus_bits / 8.0  # double data rate
    if peak_tflops:
        out["peak_flops"] = {"float32": peak_tflops * 1e12, "float64": peak_tflops * 1e12}
    if peak_gbs:
        out["peak_bw"] = peak_gbs * 1e9
    return out


def _phi_mults(activation: str, exponent: float) -> int:
    if float(exponent).is_integer():
        e = int(exponent)
        return max(0, e.bit_length() - 1 + bin(e).count("1") - 1) + 1
    return 20


def cost_model(n, d, k, itemsize, path, activation, exponent) -> tuple[float, float]:
    """(FLOPs, bytes) per sample of the loss kernel (see the module docstring)."""
    tail = n * (_phi_mults(activation, exponent) + 3) + 8 * k
    if path == "columns":
        flops = 2.0 * n * k + tail
        main = k * n * itemsize
    else:
        flops = 2.0 * d * k + 2.0 * d * n + tail
        main = d * n * itemsize
    return flops, main + k * (4 + itemsize) + 8 + 16


def train_cost_model(n, d, k, itemsize, activation, exponent) -> tuple[float, float]:
    """(FLOPs, bytes) per sample of the gradient kernel (see the module docstring)."""
    flops = 4.0 * d * k + 6.0 * d * n + n * (2 * _phi_mults(activation, exponent) + 8)
    return flops, 3.0 * d * n * itemsize + 16.0 * d * n + k * (4 + itemsize) + 8


def _best(func, repeats):
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kernel", choices=["mc", "train"], default="mc")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--p", type=float, default=0.01)
    ap.add_argument("--activation", default="relu_power")
    ap.add_argument("--exponent", type=float, default=2.0)
    ap.add_argument("--values", default="uniform")
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    ap.add_argument("--path", choices=["columns", "dense", "auto"], default="columns")
    ap.add_argument("--samples", type=int, default=10_000_000)
    ap.add_argument("--block-size", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--instances", type=int, default=128, help="instances trained at once (--kernel train)"
    )
    ap.add_argument("--per-feature", action="store_true")
    ap.add_argument("--check", action="store_true", help="compare with the CPU backend first")
    ap.add_argument("--peak-tflops", type=float, default=None, help="override the FLOP/s peak")
    ap.add_argument("--peak-gbs", type=float, default=None, help="override the DRAM peak (GB/s)")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    ap.add_argument(
        "--allow-simulator",
        action="store_true",
        help="run on the simulator (tests the script only)",
    )
    args = ap.parse_args(argv)

    simulated = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")
    if simulated and not args.allow_simulator:
        _skip("NUMBA_ENABLE_CUDASIM is set: the CUDA simulator is not a GPU")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import fastsuper as fs
    from fastsuper.mc import cuda as bc

    try:
        cuda = bc.require_cuda()
    except RuntimeError as exc:
        _skip(str(exc))
    from fastsuper.core.config import DEFAULT_BLOCK
    from fastsuper.mc import kernels_cuda as kc
    from fastsuper.mc.paths import choose_path

    dtype = np.dtype(args.dtype)
    block = args.block_size or DEFAULT_BLOCK
    rng = np.random.default_rng(0)
    W = (rng.standard_normal((args.d, args.n)) / math.sqrt(args.d)).astype(dtype)
    model = fs.Model(W, activation=args.activation, exponent=args.exponent)
    inputs = fs.SparseInputs(args.n, p=args.p, values=args.values)
    path = choose_path(model, inputs, args.samples) if args.path == "auto" else args.path
    kw = dict(path=path, block_size=block, per_feature=args.per_feature)

    peaks = device_peaks(cuda, args.peak_tflops, args.peak_gbs)
    print(
        f"device: {peaks['name']} (cc {peaks['cc'][0]}.{peaks['cc'][1]}, {peaks['sms']} SMs, "
        f"SM clock {peaks['clock_ghz']} GHz, memory {peaks['bus_bits']}-bit at "
        f"{peaks['mem_clock_ghz']} GHz)"
    )
    pf, bw = peaks["peak_flops"][args.dtype], peaks["peak_bw"]
    print(
        f"peaks: {args.dtype} {pf / 1e12 if pf else float('nan'):.1f} TFLOP/s (non-tensor), "
        f"DRAM {bw / 1e12 if bw else float('nan'):.2f} TB/s"
    )
    k = inputs.expected_active
    print(
        f"config: n={args.n} d={args.d} p={args.p:g} (E K = {k:g}) {args.activation} "
        f"{args.exponent:g}, {args.values} values, {args.dtype}, {path} path, "
        f"{args.samples:,} samples, block {block}" + (", per-feature" if args.per_feature else "")
    )

    if args.kernel == "train":
        return _train(args, fs, bc, model, inputs, peaks, pf, bw, k, dtype, simulated)

    # compile every kernel (not timed), then optionally check against the CPU
    bc.estimate_loss_cuda(model, inputs, 2 * block, 0, **kw)
    if args.check:
        m = min(args.samples, 200_000)
        cpu = fs.estimate_loss(model, inputs, m, seed=1, **kw)
        gpu = bc.estimate_loss_cuda(model, inputs, m, 1, **kw)
        rel = abs(gpu.mean - cpu.mean) / abs(cpu.mean)
        grel = abs(gpu.gain_mean - cpu.gain_mean) / max(abs(cpu.gain_mean), 1e-300)
        print(f"check vs CPU ({m:,} samples): loss rel. diff {rel:.2e}, gain {grel:.2e}")

    # end to end
    t = _best(lambda: bc.estimate_loss_cuda(model, inputs, args.samples, 1, **kw), args.repeats)
    rate = args.samples / t
    print(f"end to end: {rate:.4g} samples/s (best of {args.repeats}: {t:.4g} s)")

    # stages, on one chunk, timed with CUDA events
    dev = bc.DeviceInputs(cuda, inputs)
    plan = bc.MCPlan(cuda, kc, model, inputs, path == "columns", args.per_feature, block, None)
    ns = min(args.samples, bc.chunk_samples(block, dev.bytes_per_sample(dtype.itemsize)))
    seed = np.uint64(1)
    ev = [cuda.event() for _ in range(4)]  # timing events (the default)
    best = [math.inf] * 3
    for _ in range(args.repeats):
        ev[0].record()
        _, indptr, indices, values = bc.draw_chunk(cuda, dev, seed, 0, ns, dtype)
        ev[1].record()
        loss, gain, _, _ = plan.losses(indptr, indices, values, ns)
        ev[2].record()
        plan.block_stats(loss, gain, ns, 0)
        ev[3].record()
        ev[3].synchronize()
        for i in range(3):
            best[i] = min(best[i], ev[i].elapsed_time(ev[i + 1]) / 1e3)
    if simulated:  # the simulator's events do not time anything
        best = [1.0] * 3
    names = ("sampler (count, host prefix sum, fill)", "loss kernel", "Welford + copy")
    for name, sec in zip(names, best):
        print(f"  {name:40s} {ns / sec:.4g} samples/s ({sec * 1e3:.3g} ms for {ns:,})")

    flops, nbytes = cost_model(
        args.n, args.d, k, dtype.itemsize, path, args.activation, args.exponent
    )
    kr = ns / best[1]
    achieved_f, achieved_b = kr * flops, kr * nbytes
    print(f"loss kernel model: {flops:.4g} FLOP and {nbytes:.4g} B per sample")
    print(
        f"  {achieved_f / 1e12:.4g} TFLOP/s"
        + (f" = {100 * achieved_f / pf:.3g}% of the {args.dtype} peak" if pf else "")
        + f"; {achieved_b / 1e9:.4g} GB/s"
        + (
            f" = {100 * achieved_b / bw:.3g}% of DRAM bandwidth (no-reuse upper bound)"
            if bw
            else ""
        )
    )
    if args.json:
        res = dict(
            vars(args),
            path=path,
            device=peaks,
            end_to_end_samples_per_s=rate,
            stage_seconds=dict(zip(("sampler", "loss_kernel", "welford"), best)),
            stage_samples=ns,
            flops_per_sample=flops,
            bytes_per_sample=nbytes,
            loss_kernel_flops=achieved_f,
            loss_kernel_bytes_per_s=achieved_b,
        )
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=1, default=str)
    return 0


def _train(args, fs, bc, model, inputs, peaks, pf, bw, k, dtype, simulated) -> int:
    """``--kernel train``: sampled loss and gradient, and Adam steps of fit(backend="cuda")."""
    from fastsuper.core.config import GRAD_BLOCK
    from fastsuper.train import cuda as trc
    from fastsuper.train.adam import loss_grad

    block = args.block_size or GRAD_BLOCK
    trc.loss_grad_cuda(model, inputs, 2 * block, 0, block_size=block)  # compile
    if args.check:
        m = min(args.samples, 100_000)
        cpu = loss_grad(model, inputs, m, 1, block_size=block)
        gpu = trc.loss_grad_cuda(model, inputs, m, 1, block_size=block)
        rel = abs(gpu.loss - cpu.loss) / abs(cpu.loss)
        grel = np.abs(gpu.dW - cpu.dW).max() / np.abs(cpu.dW).max()
        print(f"check vs CPU ({m:,} samples): loss rel. diff {rel:.2e}, dW {grel:.2e}")
    t = _best(
        lambda: trc.loss_grad_cuda(model, inputs, args.samples, 1, block_size=block), args.repeats
    )
    rate = args.samples / (1.0 if simulated else t)
    flops, nbytes = train_cost_model(
        args.n, args.d, k, dtype.itemsize, args.activation, args.exponent
    )
    print(f"loss + gradient: {rate:.4g} samples/s end to end (best of {args.repeats}: {t:.4g} s)")
    print(f"gradient kernel model: {flops:.4g} FLOP and {nbytes:.4g} B per sample")
    af, ab = rate * flops, rate * nbytes
    print(
        f"  {af / 1e12:.4g} TFLOP/s"
        + (f" = {100 * af / pf:.3g}% of the {args.dtype} peak" if pf else "")
        + f"; {ab / 1e9:.4g} GB/s"
        + (f" = {100 * ab / bw:.3g}% of DRAM bandwidth (no-reuse upper bound)" if bw else "")
    )
    from fastsuper.core import config

    steps, batch = (2, 8) if simulated else (200, 1024)
    inst = 2 if simulated else args.instances
    fit_kw = dict(
        n_instances=inst, p=args.p, activation=args.activation, exponent=args.exponent,
        values=args.values, steps=steps, batch_size=batch, dtype=dtype, progress=False,
    )  # fmt: skip
    fs.fit(args.n, args.d, **dict(fit_kw, steps=2, backend="cuda"))  # compile
    fs.fit(args.n, args.d, **dict(fit_kw, steps=2))
    t_fit = _best(lambda: fs.fit(args.n, args.d, backend="cuda", **fit_kw), args.repeats)
    t_cpu = _best(lambda: fs.fit(args.n, args.d, **fit_kw), args.repeats)
    print(
        f"fit, {inst} instances, batch {batch}: {steps / t_fit:.4g} Adam steps/s on the GPU "
        f"(one launch per {config.CUDA_TRAIN_STEPS} steps), {steps / t_cpu:.4g} on the CPU "
        f"({t_cpu / t_fit:.3g}x)"
    )
    if args.json:
        res = dict(
            vars(args),
            device=peaks,
            end_to_end_samples_per_s=rate,
            flops_per_sample=flops,
            bytes_per_sample=nbytes,
            adam_steps_per_s=steps / t_fit,
        )
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
