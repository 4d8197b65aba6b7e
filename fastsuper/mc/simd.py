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

The smooth activations (``MODE_SMOOTH``: gelu, tanh, softplus, sigmoid,
silu) are applied in registers as well, by the explicit AVX-512 vector forms of
:mod:`fastsuper.core.vecmath`; a tile with a pre-activation outside the
form's domain (rare: the far tails, NaN) is handed back to the caller stored
as ``MODE_ZX``.  ``MODE_ZX`` (leaky_relu, identity, and the smooth activations
on CPUs without AVX-512) leaves the tile's ``z`` and its dense ``x`` side by
side in the tile buffer; the caller applies the activation in a vectorised
loop and :func:`loss_terms_sum` forms and sums the loss terms in one pass, in
the same order as ``MODE_SMOOTH``: the two give the same numbers.

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
round-off); samples and tiles are still accumulated in float64.  The smooth
activations' float32 tiles and :func:`loss_terms_sum` sum in the same way.

The order of the floating-point operations is fixed by the code (rows in the
order given, one accumulator per vector register), so results are
reproducible bit for bit; they agree with the other paths to round-off.
"""

from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils, types
from numba.core.extending import intrinsic

from fastsuper.core import config, vecmath

#: modes: store ``z`` only (any activation), or apply one of these activations
#: and return the tile's loss ``sum_j imp_j (phi_j - x_j)^2`` in float64, or
#: (``MODE_ZX``) store ``z`` and the tile's dense ``x`` side by side
MODE_Z, MODE_RELU1, MODE_RELU2, MODE_RELU3, MODE_POW2, MODE_POW3, MODE_ZX = range(7)
#: (:func:`tile_zx_split`) store ``z`` and the tile's dense ``x`` in two arrays
MODE_ZX_SPLIT = 7
#: (the ``tile_<activation>`` kernels) a smooth activation's vector form applied in
#: registers, the tile's loss returned; ``z`` and ``x`` stored as ``MODE_ZX`` where a lane
#: is outside the form's domain
MODE_SMOOTH = 8

_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
#: fast-math flags of the loss terms of :data:`MODE_SMOOTH` and :func:`loss_terms_sum`:
#: Numba's fast-math pass leaves flagged instructions alone, so inside a fast-math
#: kernel the terms are rounded and summed as written (no reassociation, no
#: contraction; only the sign of a zero may differ), and the two give the same numbers
_IN_ORDER = ("nsz",)


#: the integer power of each activation mode
_POWER = {MODE_RELU1: 1, MODE_RELU2: 2, MODE_RELU3: 3, MODE_POW2: 2, MODE_POW3: 3}


class _TileCode:
    """The LLVM IR of one call of a tile intrinsic (:func:`_make_tile_kernel`).

    Holds what its parts share: the builder, the arrays and scalars of the
    call, the element and vector types.
    """

    def __init__(self, mode, context, builder, tys, args, key=None):
        self.mode, self.context, self.builder, self.tys = mode, context, builder, tys
        self.key = key
        if mode == MODE_SMOOTH:  # c, lo, hi: float64 scalars, as <8 x double> splats
            self.c, self.lo, self.hi = (self.splat64(a) for a in args[10:13])

        def array(i):
            return context.make_array(tys[i])(context, builder, args[i])

        def as_i64(i):
            return context.cast(builder, args[i], tys[i], types.int64)

        self.pa, self.ba, self.ca, self.va = array(0), array(2), array(4), array(5)
        self.oa, self.ia = array(8), array(9)
        if mode == MODE_ZX_SPLIT:  # z into array 8, the dense x into array 9, imp is array 10
            self.xa, self.ia = array(9), array(10)
        self.poff, self.j0, self.e0, self.e1 = as_i64(1), as_i64(3), as_i64(6), as_i64(7)
        dt = tys[0].dtype
        self.isz = 4 if dt == types.float32 else 8
        self.elty = context.get_value_type(dt)
        self.lanes = config.VECTOR_BYTES // self.isz
        self.vty = ir.VectorType(self.elty, self.lanes)
        self.dvty = ir.VectorType(ir.DoubleType(), self.lanes)
        self.narrow_sum = self.isz == 4 and tys[9].dtype == types.float32
        self.fma = cgutils.get_or_insert_function(
            builder.module,
            ir.FunctionType(self.vty, [self.vty] * 3),
            f"llvm.fma.v{self.lanes}f{8 * self.isz}",
        )

    def vec_ptr(self, ptr, k, ty=None):
        """Pointer to the ``k``-th vector from ``ptr`` (of type ``ty``, the tile's by default)."""
        ty = self.vty if ty is None else ty
        elem = self.builder.gep(ptr, [ir.Constant(_I64, k * self.lanes)])
        return self.builder.bitcast(elem, ty.as_pointer())

    def splat(self, x):
        """The vector with every lane ``x``."""
        b, vty = self.builder, self.vty
        v = b.insert_element(ir.Constant(vty, ir.Undefined), x, ir.Constant(_I32, 0))
        mask = ir.Constant(ir.VectorType(_I32, self.lanes), [0] * self.lanes)
        return b.shuffle_vector(v, ir.Constant(vty, ir.Undefined), mask)

    def splat64(self, x):
        """The ``<8 x double>`` with every lane the float64 ``x``."""
        b, vty = self.builder, ir.VectorType(ir.DoubleType(), 8)
        v = b.insert_element(ir.Constant(vty, ir.Undefined), x, ir.Constant(_I32, 0))
        mask = ir.Constant(ir.VectorType(_I32, 8), [0] * 8)
        return b.shuffle_vector(v, ir.Constant(vty, ir.Undefined), mask)

    def add_rows(self, width):
        """``z = b[j0 : j0 + width] + sum_e P[row of cidx[e]] cval[e]``: one accumulator a vector.

        The accumulators are allocas in the entry block (LLVM promotes them
        to registers).  The activation modes also scatter the sample's ``x``
        into the dense tile buffer ``out``.
        """
        b, isz = self.builder, self.isz
        nvec = width // self.lanes
        bptr = b.gep(self.ba.data, [self.j0])
        acc = [cgutils.alloca_once(b, self.vty) for _ in range(nvec)]
        for k in range(nvec):
            b.store(b.load(self.vec_ptr(bptr, k), align=isz), acc[k])
        row_len = ir.Constant(_I64, width)
        with cgutils.for_range(b, b.sub(self.e1, self.e0)) as loop:
            e = b.add(self.e0, loop.index)
            i = b.load(b.gep(self.ca.data, [e]))
            i = self.context.cast(b, i, self.tys[4].dtype, types.int64)
            xs = b.load(b.gep(self.va.data, [e]))
            x = self.splat(xs)
            row = b.gep(self.pa.data, [b.add(self.poff, b.mul(i, row_len))])
            if self.mode != MODE_Z:
                # x_i into the tile's dense x buffer when i is in the tile, else
                # into its guard slot (index width): a select, no branch
                # (MODE_ZX: the buffer starts at index width, the guard at 2 width)
                rel = b.sub(i, self.j0)
                inside = b.icmp_unsigned("<", rel, row_len)
                xdata = self.oa.data
                if self.mode in (MODE_ZX, MODE_SMOOTH):
                    slot = b.select(inside, b.add(rel, row_len), b.add(row_len, row_len))
                elif self.mode == MODE_ZX_SPLIT:  # the guard slot: the x array's last element
                    xlen = cgutils.unpack_tuple(b, self.xa.shape, 1)[0]
                    slot = b.select(inside, rel, b.sub(xlen, ir.Constant(xlen.type, 1)))
                    xdata = self.xa.data
                else:
                    slot = b.select(inside, rel, row_len)
                b.store(xs, b.gep(xdata, [slot]))
            for k in range(nvec):
                r = b.load(self.vec_ptr(row, k), align=isz)
                b.store(b.call(self.fma, [r, x, b.load(acc[k])]), acc[k])
        return acc

    def loss_terms(self, acc):
        """The vector sum of ``imp_j (phi_j - x_j)^2`` over the tile (``out`` left zero)."""
        b, isz, oa = self.builder, self.isz, self.oa
        zero = ir.Constant(self.vty, [ir.Constant(self.elty, 0.0)] * self.lanes)
        iptr = b.gep(self.ia.data, [self.j0])
        total = None
        for k in range(len(acc)):
            z = b.load(acc[k])
            if self.mode in (MODE_RELU1, MODE_RELU2, MODE_RELU3):
                # relu(t) = t if t > 0 else t - t  (NaN stays NaN, as in activations.relu)
                z = b.select(b.fcmp_ordered(">", z, zero), z, b.fsub(z, z))
            u = z
            for _ in range(_POWER[self.mode] - 1):
                u = b.fmul(u, z)
            xv = b.load(self.vec_ptr(oa.data, k), align=isz)
            b.store(zero, self.vec_ptr(oa.data, k), align=isz)  # zeros for the next sample
            dif = b.fsub(u, xv)  # phi_j - x_j
            if self.narrow_sum:  # float32 terms, summed in float32 over the tile's vectors
                w = b.load(self.vec_ptr(iptr, k), align=isz)
                t = b.fmul(w, b.fmul(dif, dif))
            else:
                dd = b.fpext(dif, self.dvty) if isz == 4 else dif
                w = b.load(self.vec_ptr(iptr, k, self.dvty), align=8)
                t = b.fmul(w, b.fmul(dd, dd))
            total = t if total is None else b.fadd(total, t)
        if self.narrow_sum:
            total = b.fpext(total, self.dvty)
        return total

    def smooth(self, acc):
        """:data:`MODE_SMOOTH`: the tile's loss, or -1 with ``z`` stored (a lane out of domain).

        ``phi`` of the tile's vectors by :func:`fastsuper.core.vecmath.emit_vectors` and
        their terms ``imp_j (phi_j - x_j)^2`` added up in the order of
        :func:`loss_terms_sum` (float64: eight terms at a time; float32: sixteen float32
        terms at a time, as the other float32 tiles; then the lanes pairwise in float64:
        the same number).  If every lane was in the domain, the dense ``x`` is zeroed and
        the sum returned; else ``z`` is stored at ``out[:width]`` beside the dense ``x``
        (``MODE_ZX``), -1 returned, and the caller finishes the tile.
        """
        b, isz, oa = self.builder, self.isz, self.oa

        def store_z():
            for k in range(len(acc)):
                b.store(b.load(acc[k]), self.vec_ptr(oa.data, k), align=isz)

        if not vecmath.AVAILABLE:  # no vector forms: the caller applies the activation
            store_z()
            return self.context.get_constant(types.float64, -1.0)
        width = len(acc) * self.lanes
        dvty = ir.VectorType(ir.DoubleType(), 8)
        xbase = b.gep(oa.data, [ir.Constant(_I64, width)])
        iptr = b.gep(self.ia.data, [self.j0])
        halves = [list(range(8 * h, 8 * h + 8)) for h in range(self.lanes // 8)]

        def eights(v):  # a vector as float64 vectors of 8 lanes, in order
            if isz == 8:
                return [v]
            return [
                b.fpext(b.shuffle_vector(v, v, ir.Constant(ir.VectorType(_I32, 8), h)), dvty)
                for h in halves
            ]

        # "nsz" on the activation's arithmetic: Numba's fast-math pass would otherwise
        # flag it as the kernel's (reassociation, contraction), breaking its exact steps
        xs = [b.load(acc[k]) for k in range(len(acc))]
        allok, fs = vecmath.emit_vectors(self.key, b, xs, self.c, self.lo, self.hi, ("nsz",))
        total = None
        for k, f in enumerate(fs):
            xv = b.load(self.vec_ptr(xbase, k), align=isz)
            w = b.load(self.vec_ptr(iptr, k), align=isz)
            if self.narrow_sum:  # float32 terms, one vector's lanes each, in order
                parts = [(f, xv, w)]
            else:
                parts = zip(eights(f), eights(xv), eights(w))
            for fp, xp, wp in parts:
                total = _add_term(b, fp, xp, wp, total)
        if self.narrow_sum:
            total = self.horizontal_sum(b.fpext(total, self.dvty), None, _IN_ORDER)
        else:
            total = self.horizontal_sum(total, 8, _IN_ORDER)
        result = cgutils.alloca_once(b, ir.DoubleType())
        with b.if_else(allok, likely=True) as (then, otherwise):
            with then:
                zero = ir.Constant(self.vty, [ir.Constant(self.elty, 0.0)] * self.lanes)
                for k in range(len(acc)):
                    b.store(zero, self.vec_ptr(xbase, k), align=isz)
                b.store(total, result)
            with otherwise:
                store_z()
                b.store(ir.Constant(ir.DoubleType(), -1.0), result)
        return b.load(result)

    def horizontal_sum(self, total, lanes=None, flags=()):
        """The float64 sum of the ``lanes`` lanes of ``total`` (the tile's by default), pairwise."""
        b = self.builder
        h = self.lanes if lanes is None else lanes
        while h > 1:
            h //= 2
            lo = ir.Constant(ir.VectorType(_I32, h), list(range(h)))
            hi = ir.Constant(ir.VectorType(_I32, h), list(range(h, 2 * h)))
            left = b.shuffle_vector(total, total, lo)
            total = b.fadd(left, b.shuffle_vector(total, total, hi), flags=flags)
        return b.extract_element(total, ir.Constant(_I32, 0))

    def emit(self, tile_bytes):
        """The tile's code for rows of ``tile_bytes``; returns the float64 sum."""
        acc = self.add_rows(tile_bytes // self.isz)
        if self.mode == MODE_SMOOTH:
            return self.smooth(acc)
        if self.mode in (MODE_Z, MODE_ZX, MODE_ZX_SPLIT):
            for k in range(len(acc)):
                ptr = self.vec_ptr(self.oa.data, k)
                self.builder.store(self.builder.load(acc[k]), ptr, align=self.isz)
            return self.context.get_constant(types.float64, 0.0)
        return self.horizontal_sum(self.loss_terms(acc))

    def body(self):
        """One intrinsic for both panel widths: the branch on ``P.shape[1]`` is taken
        once per call and predicted."""
        b = self.builder
        result = cgutils.alloca_once(b, ir.DoubleType())
        ncols = cgutils.unpack_tuple(b, self.pa.shape, 2)[1]
        wide = b.icmp_signed("==", ncols, ir.Constant(ncols.type, config.TILE_BYTES // self.isz))
        with b.if_else(wide) as (then, otherwise):
            with then:
                b.store(self.emit(config.TILE_BYTES), result)
            with otherwise:
                b.store(self.emit(config.NARROW_TILE_BYTES), result)
        return b.load(result)


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
    the tile and leave ``out[:width]`` zero again.  :data:`MODE_ZX` writes
    ``z`` to ``out[:width]`` and the dense ``x`` to ``out[width : 2 width]``
    (guard slot ``2 width``; ``out`` has ``2 width + 1`` elements, the ``x``
    part zeros on entry) and returns 0: the caller applies the activation.
    """

    @intrinsic
    def tile_kernel(typingctx, P, poff, b, j0, cidx, cval, e0, e1, out, imp):
        sig = types.float64(P, poff, b, j0, cidx, cval, e0, e1, out, imp)

        def codegen(context, builder, signature, args):
            return _TileCode(mode, context, builder, signature.args, args).body()

        return sig, codegen

    return tile_kernel


(tile_z, tile_relu1, tile_relu2, tile_relu3, tile_pow2, tile_pow3, tile_zx) = (
    _make_tile_kernel(mode) for mode in range(7)
)


def _make_smooth_kernel(key):
    """The :data:`MODE_SMOOTH` intrinsic of activation ``key`` (``-SOFTPLUS``: softplus, ``c = 1``).

    ``tile(P, poff, b, j0, cidx, cval, e0, e1, out, imp, c, lo, hi)``: as
    :data:`MODE_ZX` (:func:`_make_tile_kernel`; ``out`` has ``2 width + 1``
    elements, its ``x`` part zeros on entry), with the activation's parameter ``c`` and
    the domain ``[lo, hi]`` of its vector form
    (:func:`fastsuper.core.vecmath.vector_domain`).  Returns the tile's loss
    ``sum_j imp_j (phi_j - x_j)^2`` (``out`` left zero) when every ``z`` is in the
    domain, else -1 with ``z`` and the dense ``x`` stored as by :data:`MODE_ZX`.  Where
    the CPU lacks the vector forms (:data:`fastsuper.core.vecmath.AVAILABLE`) always the
    latter.
    """

    @intrinsic
    def tile_kernel(typingctx, P, poff, b, j0, cidx, cval, e0, e1, out, imp, c, lo, hi):
        f64 = types.float64
        sig = f64(P, poff, b, j0, cidx, cval, e0, e1, out, imp, f64, f64, f64)

        def codegen(context, builder, signature, args):
            if vecmath.AVAILABLE:
                vecmath.allow_512(builder)
            code = _TileCode(MODE_SMOOTH, context, builder, signature.args, args, key)
            return code.body()

        return sig, codegen

    return tile_kernel


(tile_sigmoid, tile_silu, tile_tanh, tile_gelu_tanh, tile_gelu, tile_softplus,
 tile_softplus_unit) = (_make_smooth_kernel(key) for key in vecmath.VECTOR_KEYS)  # fmt: skip


@intrinsic
def tile_zx_split(typingctx, P, poff, b, j0, cidx, cval, e0, e1, z, x, imp):
    """:data:`MODE_ZX` with ``z`` and the dense ``x`` in separate arrays.

    As the tile kernels (:func:`_make_tile_kernel`), with ``z`` receiving the
    tile's ``z`` (``width`` elements) and ``x`` its dense ``x`` (zeros on
    entry at ``x[:width]``): each active ``x_i`` is stored at ``x[i - j0]``
    when ``i`` is in the tile, else at the guard slot ``x[len(x) - 1]``, so
    that the tiles of several samples can lie side by side in one array
    (sample ``g`` passes ``z[g width : (g + 1) width]`` and ``x[g width :]``,
    all of them sharing the guard slot at the end).  Returns 0.
    """
    sig = types.float64(P, poff, b, j0, cidx, cval, e0, e1, z, x, imp)

    def codegen(context, builder, signature, args):
        return _TileCode(MODE_ZX_SPLIT, context, builder, signature.args, args).body()

    return sig, codegen


def _add_term(builder, f, x, w, total):
    """``total + w (f - x)**2`` lanewise as ``fma(w d, d, total)``, ``d = f - x`` (``w d d``
    alone where ``total`` is None): the loss terms of :data:`MODE_SMOOTH` and
    :func:`loss_terms_sum`, in one order."""
    d = builder.fsub(f, x, flags=_IN_ORDER)
    wd = builder.fmul(w, d, flags=_IN_ORDER)
    if total is None:
        return builder.fmul(wd, d, flags=_IN_ORDER)
    ty = f.type
    fma = cgutils.get_or_insert_function(
        builder.module,
        ir.FunctionType(ty, [ty] * 3),
        f"llvm.fma.v{ty.count}f{32 if ty.element == ir.FloatType() else 64}",
    )
    return builder.call(fma, [wd, d, total])


@intrinsic
def loss_terms_sum(typingctx, f, x, w):
    """``sum_j w_j (f_j - x_j)^2`` over arrays whose length is a multiple of a vector.

    ``f``, ``x``, ``w`` of one dtype; ``x`` is left zero.  float64: eight
    terms at a time in one ``<8 x double>`` accumulator, in order, then its
    lanes pairwise.  float32: the terms in float32, sixteen at a time in one
    ``<16 x float>`` accumulator, in order, then its lanes in float64
    pairwise (the order of the float32 tile kernels); each term added as
    ``fma(w d, d, acc)``, ``d = f - x``.  The same order whatever the CPU,
    so the result is reproducible bit for bit.
    """

    def codegen(context, builder, signature, args):
        fa, xa, wa = (
            context.make_array(ty)(context, builder, a) for ty, a in zip(signature.args, args)
        )
        dt = signature.args[0].dtype
        isz = 4 if dt == types.float32 else 8
        lanes = 16 if isz == 4 else 8
        elty = context.get_value_type(dt)
        vty = ir.VectorType(elty, lanes)
        n = cgutils.unpack_tuple(builder, fa.shape, 1)[0]
        nvec = builder.sdiv(n, ir.Constant(n.type, lanes))
        acc = cgutils.alloca_once(builder, vty)
        zero = ir.Constant(vty, [ir.Constant(elty, 0.0)] * lanes)
        builder.store(zero, acc)
        with cgutils.for_range(builder, nvec) as loop:
            off = builder.mul(loop.index, ir.Constant(loop.index.type, lanes))

            def ptr(arr):
                return builder.bitcast(builder.gep(arr.data, [off]), vty.as_pointer())

            def load(arr):
                return builder.load(ptr(arr), align=isz)

            total = _add_term(builder, load(fa), load(xa), load(wa), builder.load(acc))
            builder.store(zero, ptr(xa), align=isz)
            builder.store(total, acc)
        total = builder.load(acc)
        if isz == 4:
            total = builder.fpext(total, ir.VectorType(ir.DoubleType(), lanes))
        h = lanes
        while h > 1:
            h //= 2
            lo = ir.Constant(ir.VectorType(_I32, h), list(range(h)))
            hi = ir.Constant(ir.VectorType(_I32, h), list(range(h, 2 * h)))
            left = builder.shuffle_vector(total, total, lo)
            total = builder.fadd(left, builder.shuffle_vector(total, total, hi), flags=_IN_ORDER)
        return builder.extract_element(total, ir.Constant(_I32, 0))

    return types.float64(f, x, w), codegen
