"""Explicit SIMD for the CPU column kernels: LLVM vector code through Numba intrinsics.

The "columns_blocked" Monte-Carlo path spends its time adding a few rows of
``A = W^T W`` (restricted to a tile of outputs) into a sample's
pre-activations and squaring the result.  Written as plain Numba loops, the
tile of pre-activations lives in memory and is loaded and stored again for
every row added; LLVM cannot keep it in registers because it cannot prove
that the tile and ``A`` do not overlap.  The intrinsics below emit the loop
directly as LLVM vector IR: the tile of pre-activations is a handful of
vector registers (``<8 x double>`` / ``<16 x float>`` each, 64 bytes, which
LLVM maps onto whatever vector width the CPU has), each row of the tile is
one vector load and fused multiply-add per register, and the activation and
the loss terms are applied while the tile is still in registers.  The loss
terms are ``imp_j (phi_j - x_j)^2`` over the whole tile, with the sample's
``x`` scattered into a dense tile buffer while its rows are added: no
separate, branchy pass for the corrections of the active features.

Everything is generic LLVM IR (``llvm.fma`` on vector types, ``select``,
``fpext``), so the code is portable across x86-64 (SSE2 to AVX-512) and
AArch64; CPU code only (the CUDA kernels do not use it).

Precision: rows are accumulated in the compute dtype, as on every path.
The loss terms ``imp_j (phi_j - x_j)^2`` of a tile are summed in float64 when
``imp`` is a float64 array; with float32 compute and a float32 ``imp`` (what
the "columns_blocked" kernel passes) they are formed and summed in float32
across the tile's eight vectors (eight terms per lane) and only the last
16-lane sum is in float64, which is faster (docs/benchmarks.md, "Kernel
paths") and changes a sample's loss by about 2e-7 relative (float32
round-off); samples and tiles are still accumulated in float64.

The order of the floating-point operations is fixed by the code (rows in the
order given, one accumulator per vector register), so results are
reproducible bit for bit; they agree with the other paths to round-off.
"""

from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils, types
from numba.core.extending import intrinsic

from fastsuper.core import config

#: modes: store ``z`` only (any activation), or apply one of these activations
#: and return the tile's loss ``sum_j imp_j (phi_j - x_j)^2`` in float64
MODE_Z, MODE_RELU1, MODE_RELU2, MODE_RELU3, MODE_POW2, MODE_POW3 = range(6)

_I32 = ir.IntType(32)
_I64 = ir.IntType(64)


def _make_tile_kernel(mode: int):
    """The intrinsic applying activation ``mode`` to one sample's tile.

    ``tile(P, poff, b, j0, cidx, cval, e0, e1, out, imp)``: ``P`` the panels
    (rows of :data:`config.TILE_BYTES` or :data:`config.NARROW_TILE_BYTES`), ``poff`` the
    first element of the tile's panel, ``b``/``imp`` zero-padded bias and
    importances, ``j0`` the tile's first output, entries ``e0 .. e1-1`` of
    the CSR arrays ``cidx``/``cval`` the sample's active features.

    :data:`MODE_Z` writes ``z`` of the tile to ``out`` and returns 0.  The
    activation modes use ``out`` (``width + 1`` elements, zeros) as the
    tile's dense ``x``: while the rows are added, each ``x_i`` is stored at
    ``i - j0`` when ``i`` is in the tile, else at the guard slot ``width``
    (a select, no branch); they return ``sum_j imp_j (phi_j - x_j)^2`` over
    the tile and leave ``out[:width]`` zero again.
    """

    @intrinsic
    def tile_kernel(typingctx, P, poff, b, j0, cidx, cval, e0, e1, out, imp):
        sig = types.float64(P, poff, b, j0, cidx, cval, e0, e1, out, imp)

        def codegen(context, builder, signature, args):
            tys = signature.args

            def array(i):
                return context.make_array(tys[i])(context, builder, args[i])

            def as_i64(i):
                return context.cast(builder, args[i], tys[i], types.int64)

            pa, ba, ca, va, oa, ia = array(0), array(2), array(4), array(5), array(8), array(9)
            poff_, j0_, e0_, e1_ = as_i64(1), as_i64(3), as_i64(6), as_i64(7)
            dt = tys[0].dtype
            isz = 4 if dt == types.float32 else 8
            elty = context.get_value_type(dt)
            lanes = config.VECTOR_BYTES // isz
            vty = ir.VectorType(elty, lanes)
            dvty = ir.VectorType(ir.DoubleType(), lanes)
            narrow_sum = isz == 4 and tys[9].dtype == types.float32
            fma = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vty, [vty] * 3), f"llvm.fma.v{lanes}f{8 * isz}"
            )

            def vec_ptr(ptr, k, ty=vty):
                elem = builder.gep(ptr, [ir.Constant(_I64, k * lanes)])
                return builder.bitcast(elem, ty.as_pointer())

            def splat(x):
                v = builder.insert_element(ir.Constant(vty, ir.Undefined), x, ir.Constant(_I32, 0))
                mask = ir.Constant(ir.VectorType(_I32, lanes), [0] * lanes)
                return builder.shuffle_vector(v, ir.Constant(vty, ir.Undefined), mask)

            def emit(tile_bytes):
                """The tile's code for rows of ``tile_bytes``; returns the float64 sum."""
                width = tile_bytes // isz
                nvec = width // lanes
                # z = b[j0 : j0 + width], one accumulator per vector (allocas in the entry
                # block: LLVM promotes them to registers)
                bptr = builder.gep(ba.data, [j0_])
                acc = [cgutils.alloca_once(builder, vty) for _ in range(nvec)]
                for k in range(nvec):
                    builder.store(builder.load(vec_ptr(bptr, k), align=isz), acc[k])
                row_len = ir.Constant(_I64, width)
                with cgutils.for_range(builder, builder.sub(e1_, e0_)) as loop:
                    e = builder.add(e0_, loop.index)
                    i = builder.load(builder.gep(ca.data, [e]))
                    i = context.cast(builder, i, tys[4].dtype, types.int64)
                    xs = builder.load(builder.gep(va.data, [e]))
                    x = splat(xs)
                    row = builder.gep(pa.data, [builder.add(poff_, builder.mul(i, row_len))])
                    if mode != MODE_Z:
                        # x_i into the tile's dense x buffer when i is in the tile, else
                        # into its guard slot (index width): a select, no branch
                        rel = builder.sub(i, j0_)
                        inside = builder.icmp_unsigned("<", rel, row_len)
                        slot = builder.select(inside, rel, row_len)
                        builder.store(xs, builder.gep(oa.data, [slot]))
                    for k in range(nvec):
                        r = builder.load(vec_ptr(row, k), align=isz)
                        builder.store(builder.call(fma, [r, x, builder.load(acc[k])]), acc[k])
                if mode == MODE_Z:
                    for k in range(nvec):
                        builder.store(builder.load(acc[k]), vec_ptr(oa.data, k), align=isz)
                    return context.get_constant(types.float64, 0.0)
                zero = ir.Constant(vty, [ir.Constant(elty, 0.0)] * lanes)
                iptr = builder.gep(ia.data, [j0_])
                total = None
                for k in range(nvec):
                    z = builder.load(acc[k])
                    if mode in (MODE_RELU1, MODE_RELU2, MODE_RELU3):
                        # relu(t) = t if t > 0 else t - t  (NaN stays NaN, as in activations._relu)
                        z = builder.select(
                            builder.fcmp_ordered(">", z, zero), z, builder.fsub(z, z)
                        )
                    power = {
                        MODE_RELU1: 1,
                        MODE_RELU2: 2,
                        MODE_RELU3: 3,
                        MODE_POW2: 2,
                        MODE_POW3: 3,
                    }
                    u = z
                    for _ in range(power[mode] - 1):
                        u = builder.fmul(u, z)
                    xv = builder.load(vec_ptr(oa.data, k), align=isz)
                    builder.store(zero, vec_ptr(oa.data, k), align=isz)  # zeros for the next sample
                    dif = builder.fsub(u, xv)  # phi_j - x_j
                    if narrow_sum:  # float32 terms, summed in float32 over the tile's vectors
                        w = builder.load(vec_ptr(iptr, k), align=isz)
                        t = builder.fmul(w, builder.fmul(dif, dif))
                    else:
                        dd = builder.fpext(dif, dvty) if isz == 4 else dif
                        w = builder.load(vec_ptr(iptr, k, dvty), align=8)
                        t = builder.fmul(w, builder.fmul(dd, dd))
                    total = t if total is None else builder.fadd(total, t)
                if narrow_sum:
                    total = builder.fpext(total, dvty)
                h = lanes  # pairwise horizontal sum
                while h > 1:
                    h //= 2
                    lo = ir.Constant(ir.VectorType(_I32, h), list(range(h)))
                    hi = ir.Constant(ir.VectorType(_I32, h), list(range(h, 2 * h)))
                    left = builder.shuffle_vector(total, total, lo)
                    total = builder.fadd(left, builder.shuffle_vector(total, total, hi))
                return builder.extract_element(total, ir.Constant(_I32, 0))

            # one intrinsic for both panel widths: the branch on P.shape[1] is taken
            # once per call and predicted
            result = cgutils.alloca_once(builder, ir.DoubleType())
            ncols = cgutils.unpack_tuple(builder, pa.shape, 2)[1]
            wide = builder.icmp_signed(
                "==", ncols, ir.Constant(ncols.type, config.TILE_BYTES // isz)
            )
            with builder.if_else(wide) as (then, otherwise):
                with then:
                    builder.store(emit(config.TILE_BYTES), result)
                with otherwise:
                    builder.store(emit(config.NARROW_TILE_BYTES), result)
            return builder.load(result)

        return sig, codegen

    return tile_kernel


(tile_z, tile_relu1, tile_relu2, tile_relu3, tile_pow2, tile_pow3) = (
    _make_tile_kernel(mode) for mode in range(6)
)
