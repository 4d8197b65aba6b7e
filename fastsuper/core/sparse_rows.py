"""Sparse rows times a dense matrix, with the columns of a row in vector registers.

The two products of a training step whose operand is the sub-batch of sparse
inputs ``X`` (dense rows, with the places of their nonzero entries listed by
:func:`compact_rows`: ``idx[ptr[row]:ptr[row + 1]]``):

* :func:`gather_rows`: ``H = X M`` (the codes ``h = W x``, ``M = W^T``): for each
  row, ``H[row] = sum_i X[row, i] M[i]`` over its listed entries;
* :func:`scatter_rows`: ``T += X^T U`` (the encoder term of the gradient):
  ``T[i] += X[row, i] U[row]``.

A loop over the columns inside the loop over a row's entries keeps ``H[row]``
in memory, each entry's update waiting for the last one's store: about 14
cycles an entry at ``d = 20``, no faster than a dense BLAS product at a quarter
of the features active.  Here the loops are emitted as LLVM IR
(:func:`numba.extending.intrinsic`) over 256-bit vectors (4 float64 or 8
float32 lanes, any x86-64 target) for a block of up to :data:`BLOCK_VECTORS`
vectors of columns:

* the gather keeps a row's block of ``H`` in registers, in two chains (the
  entries at even and at odd places in the row, added at the end:
  ``H[row] = even + odd``), so that consecutive entries' fused multiply-adds
  overlap; ``M`` is read from a copy whose rows are padded with zeros to whole
  vectors (about 1.1 ns an entry at ``d = 20``, float64, against 4.4 for the loop);
* the scatter loads a row's block of ``U`` once and updates the rows of ``T``
  (padded to whole vectors; the padding columns receive products of the
  padding lanes of ``U``, which are zero) by whole vectors.

The sums are in the dtype of the arrays, each product rounded once into its
sum (fused multiply-add), in the order of the entries (for the gather: the two
chains, then their sum), so the numbers are the same for any thread count.

:func:`compact_rows` lists the nonzero entries of each row: with AVX-512
(:func:`~fastsuper.core.vecmath.target_has`), eight places at a time by
``vpcompressq`` into a register and one store (about 2.5 ns a row of 100),
else one place at a time without a branch.
"""

from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from fastsuper.core.jit import kernel_njit, njit
from fastsuper.core.vecmath import allow_512, target_has

__all__ = [
    "BLOCK_VECTORS",
    "COMPRESS",
    "SCATTER_VECTORS",
    "compact_rows",
    "gather_rows",
    "gram_relu_rows",
    "lanes",
    "padded_columns",
    "scatter_rows",
]

#: vectors of columns held in registers by one pass of the gather (8: 32 float64 or 64
#: float32 columns; 13 where the target has the 32 vector registers of AVX-512, a row of
#: 100 float32 in one pass); wider matrices take several passes over the entries
BLOCK_VECTORS = 13 if target_has("avx512f") else 8
#: the same for the scatter, which holds one vector per column block, not two chains: a
#: row of 128 float64 or 256 float32 in one pass (fewer passes over the row's entries
#: matter more than spilled registers: measured 1.3x faster at 100 columns on AMD Zen 4)
SCATTER_VECTORS = 32
_VECTOR_BYTES = 32
#: whether :func:`compact_rows` compresses eight places at a time (AVX-512 on the target)
COMPRESS = target_has("avx512f")
_I64 = ir.IntType(64)
_I32 = ir.IntType(32)


@njit(inline="always")
def lanes(itemsize):
    """Columns per vector for elements of ``itemsize`` bytes (4 float64, 8 float32)."""
    return _VECTOR_BYTES // itemsize


@njit(inline="always")
def padded_columns(d, itemsize):
    """``d`` rounded up to whole vectors: the width of the padded ``M`` and ``T``."""
    w = _VECTOR_BYTES // itemsize
    return (d + w - 1) // w * w


def _i64(x):
    return ir.Constant(_I64, x)


def _splat(builder, x, vty):
    """``x`` in every lane of a vector of type ``vty``."""
    undef = ir.Constant(vty, ir.Undefined)
    one = builder.insert_element(undef, x, ir.Constant(_I32, 0))
    return builder.shuffle_vector(one, undef, ir.Constant(ir.VectorType(_I32, vty.count), None))


def _fma(builder, a, b, c):
    """``a b + c`` lanewise, rounded once (``llvm.fma``)."""
    tag = f"v{a.type.count}f{64 if a.type.element == ir.DoubleType() else 32}"
    fn = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(a.type, [a.type] * 3), f"llvm.fma.{tag}"
    )
    return builder.call(fn, [a, b, c])


class _Loop:
    """The operands of a loop: ``(ptr, idx, X, A, B, count, c0, d)``, arrays ``A`` and ``B`` of
    the element type of ``X`` (the vector type ``vty``: 32 bytes of it)."""

    def __init__(self, context, builder, argtypes, args):
        self.b = builder
        self.arr = [
            context.make_array(t)(context, builder, a) if isinstance(t, types.Array) else a
            for t, a in zip(argtypes, args)
        ]
        dtype = argtypes[2].dtype
        self.size = dtype.bitwidth // 8
        self.lanes = _VECTOR_BYTES // self.size
        self.vty = ir.VectorType(context.get_value_type(dtype), self.lanes)
        self.count, self.c0, self.d = args[5:8]

    def data(self, k):
        return self.arr[k].data

    def row_start(self, k, row):
        """Offset (in elements) of ``row`` of the 2-d array ``k``, column ``c0``."""
        stride = cgutils.unpack_tuple(self.b, self.arr[k].strides, 2)[0]
        per_row = self.b.sdiv(stride, _i64(self.size))
        return self.b.add(self.b.mul(row, per_row), self.c0)

    def at(self, k, i):
        """Element ``i`` of the 1-d array ``k``."""
        return self.b.load(self.b.gep(self.data(k), [i]))

    def value(self, x_row, i):
        """``X[row, i]`` in every lane (``x_row``: :meth:`row_start` of ``X`` with ``c0 = 0``)."""
        x = self.b.load(self.b.gep(self.data(2), [self.b.add(x_row, i)]))
        return _splat(self.b, x, self.vty)

    def vector(self, k, start, j):
        """Pointer to the ``j``-th vector of array ``k`` from offset ``start``."""
        p = self.b.gep(self.data(k), [self.b.add(start, _i64(j * self.lanes))])
        return self.b.bitcast(p, self.vty.as_pointer())

    def entries(self, row):
        """``(first, end)`` of ``row``'s entries in ``idx``."""
        return self.at(0, row), self.at(0, self.b.add(row, _i64(1)))

    def tail(self, nv):
        """Columns in the last of ``nv`` vectors from ``c0`` (1 to the lanes)."""
        return self.b.sub(self.b.sub(self.d, self.c0), _i64((nv - 1) * self.lanes))


def _partial_load(builder, base, offset, vty, rem):
    """A vector of ``base[offset : offset + rem]`` (``rem`` lanes, at least one), zeros after."""
    vec = cgutils.alloca_once_value(builder, ir.Constant(vty, None))
    for lane in range(vty.count):
        with builder.if_then(builder.icmp_signed(">", rem, _i64(lane))):
            x = builder.load(builder.gep(base, [builder.add(offset, _i64(lane))]))
            lanes_so_far = builder.load(vec)
            builder.store(builder.insert_element(lanes_so_far, x, ir.Constant(_I32, lane)), vec)
    return builder.load(vec)


def _partial_store(builder, vec, base, offset, rem):
    """``base[offset : offset + rem] = vec[:rem]``."""
    for lane in range(vec.type.count):
        with builder.if_then(builder.icmp_signed(">", rem, _i64(lane))):
            x = builder.extract_element(vec, ir.Constant(_I32, lane))
            builder.store(x, builder.gep(base, [builder.add(offset, _i64(lane))]))


def _chains(f, builder, nv):
    """The two chains of accumulators (``nv`` vectors each) of a row's gather."""
    return [[cgutils.alloca_once(builder, f.vty) for _ in range(nv)] for _ in range(2)]


def _gather_row(f, builder, nv, acc, row):
    """Row ``row``'s sums ``X[row, i] M[i]`` over its entries into the chains ``acc`` (zeroed
    first; the even places in the first, the odd ones in the second).  Returns ``(lo, hi,
    x_row)``: the row's entries and the offset of ``X[row, 0]``."""

    def add_entry(e, chain):
        i = f.at(1, e)
        x = f.value(x_row, i)
        m_row = f.row_start(3, i)
        for k in range(nv):
            w = builder.load(f.vector(3, m_row, k), align=f.size)
            builder.store(_fma(builder, w, x, builder.load(acc[chain][k])), acc[chain][k])

    for chain in acc:
        for slot in chain:
            builder.store(ir.Constant(f.vty, None), slot)
    lo, hi = f.entries(row)
    x_row = builder.sub(f.row_start(2, row), f.c0)
    pairs = builder.sdiv(builder.sub(hi, lo), _i64(2))
    with cgutils.for_range(builder, pairs) as loop:
        e = builder.add(lo, builder.mul(loop.index, _i64(2)))
        add_entry(e, 0)
        add_entry(builder.add(e, _i64(1)), 1)
    last = builder.add(lo, builder.mul(pairs, _i64(2)))
    with builder.if_then(builder.icmp_signed("<", last, hi)):
        add_entry(last, 0)
    return lo, hi, x_row


def _emit_gather(f, builder, nv):
    """The gather of ``nv`` vectors of columns from ``c0`` (:func:`gather_rows`)."""
    rem = f.tail(nv)
    acc = _chains(f, builder, nv)
    with cgutils.for_range(builder, f.count) as rows:
        row = rows.index
        _gather_row(f, builder, nv, acc, row)
        h_row = f.row_start(4, row)
        for k in range(nv):
            s = builder.fadd(builder.load(acc[0][k]), builder.load(acc[1][k]))
            if k < nv - 1:
                builder.store(s, f.vector(4, h_row, k), align=f.size)
            else:
                off = builder.add(h_row, _i64(k * f.lanes))
                _partial_store(builder, s, f.data(4), off, rem)


def _emit_scatter(f, builder, nv):
    """The scatter of ``nv`` vectors of columns from ``c0`` (:func:`scatter_rows`)."""
    rem = f.tail(nv)
    with cgutils.for_range(builder, f.count) as rows:
        row = rows.index
        u_row = f.row_start(3, row)
        u = [builder.load(f.vector(3, u_row, k), align=f.size) for k in range(nv - 1)]
        off = builder.add(u_row, _i64((nv - 1) * f.lanes))
        u.append(_partial_load(builder, f.data(3), off, f.vty, rem))
        lo, hi = f.entries(row)
        _scatter_row(f, builder, u, lo, hi, builder.sub(f.row_start(2, row), f.c0))


def _scatter_row(f, builder, u, lo, hi, x_row, clear=None):
    """``B[i] += X[row, i] u`` (the vectors ``u``) over the row's entries ``lo .. hi - 1``
    (``x_row``: the offset of ``X[row, 0]``); where the flag ``clear`` (an LLVM ``i1``)
    is set, ``X[row, i] = 0`` once read."""
    with cgutils.for_range_slice(builder, lo, hi, _i64(1)) as (e, _):
        i = f.at(1, e)
        x = f.value(x_row, i)
        if clear is not None:
            with builder.if_then(clear, likely=True):
                xp = builder.gep(f.data(2), [builder.add(x_row, i)])
                builder.store(ir.Constant(xp.type.pointee, 0.0), xp)
        t_row = f.row_start(4, i)
        for k, uk in enumerate(u):
            p = f.vector(4, t_row, k)
            t = builder.load(p, align=f.size)
            builder.store(_fma(builder, uk, x, t), p, align=f.size)


def _by_vector_count(builder, nv, most, emit):
    """A switch on ``nv``: for each count ``k`` from 1 to ``most`` the loop ``emit(k)`` builds
    (compiled for that many vectors of columns); other counts do nothing."""
    done = builder.append_basic_block("vectors.done")
    switch = builder.switch(nv, done)
    for k in range(1, most + 1):
        case = builder.append_basic_block(f"vectors.{k}")
        switch.add_case(_i64(k), case)
        builder.position_at_end(case)
        emit(k)
        builder.branch(done)
    builder.position_at_end(done)


def _make_block(emit, most):
    """The intrinsic ``block(nv, ptr, idx, X, A, B, count, c0, d)``: ``emit``'s loop for
    ``nv`` (1 to ``most``) vectors of columns from ``c0``, one loop per ``nv`` behind a
    switch."""

    @intrinsic
    def block(typingctx, nv, ptr, idx, X, A, B, count, c0, d):
        sig = types.void(types.int64, ptr, idx, X, A, B, types.int64, types.int64, types.int64)

        def codegen(context, builder, signature, args):
            f = _Loop(context, builder, signature.args[1:], args[1:])
            _by_vector_count(builder, args[0], most, lambda k: emit(f, builder, k))
            return context.get_dummy_value()

        return sig, codegen

    return block


_gather_block = _make_block(_emit_gather, BLOCK_VECTORS)
_scatter_block = _make_block(_emit_scatter, SCATTER_VECTORS)


@njit
def gather_rows(ptr, idx, X, M, H, count, d):
    """``H[row, :d] = sum_e X[row, idx[e]] M[idx[e], :d]`` for ``row < count``, ``e`` in
    ``ptr[row] .. ptr[row + 1] - 1``.

    ``M`` (n, at least ``padded_columns(d)``) with zeros after column ``d``; ``H``
    (at least ``count`` rows of at least ``d`` columns); ``X``, ``M`` and ``H``
    C-contiguous rows of one float dtype, ``ptr`` and ``idx`` int64 (the
    entries of ``X``'s rows to take, as :func:`compact_rows` lists them).
    Columns by blocks of :data:`BLOCK_VECTORS` vectors; within a block, each row's
    entries in two chains (even and odd places), ``H[row] = even + odd``.
    """
    w = lanes(M.itemsize)
    for c0 in range(0, d, BLOCK_VECTORS * w):
        nv = min(BLOCK_VECTORS, (d - c0 + w - 1) // w)
        _gather_block(nv, ptr, idx, X, M, H, count, c0, d)


@njit
def scatter_rows(ptr, idx, X, U, T, count, d):
    """``T[i, :] += X[row, i] U[row, :]``, ``i = idx[e]``, for ``row < count`` and its entries
    ``e``, in order.

    ``U`` (at least ``count`` rows of at least ``d`` columns), ``T`` (n, at least
    ``padded_columns(d)``), ``X``: C-contiguous rows of one float dtype.  The
    columns of ``T`` from ``d`` to ``padded_columns(d)`` receive zeros times the
    values: zero where every value is finite.
    """
    w = lanes(U.itemsize)
    for c0 in range(0, d, SCATTER_VECTORS * w):
        nv = min(SCATTER_VECTORS, (d - c0 + w - 1) // w)
        _scatter_block(nv, ptr, idx, X, U, T, count, c0, d)


def _vector_at(f, builder, base, offset, k, nv, rem):
    """Vector ``k`` of ``base[offset:]``; the last of ``nv`` only its ``rem`` lanes, zeros after."""
    o = builder.add(offset, _i64(k * f.lanes))
    if k < nv - 1:
        p = builder.bitcast(builder.gep(base, [o]), f.vty.as_pointer())
        return builder.load(p, align=f.size)
    return _partial_load(builder, base, o, f.vty, rem)


def _emit_gram_relu(f, builder, nv, extra):
    """The Gram-space pass of ``nv`` vectors of columns from ``c0`` (:func:`gram_relu_rows`)."""
    bias, imp2, gsum, rowloss, clear = extra
    rem = f.tail(nv)
    acc = _chains(f, builder, nv)
    zero = ir.Constant(f.vty, None)
    one = ir.Constant(f.vty, [1.0] * f.lanes)
    with cgutils.for_range(builder, f.count) as rows:
        row = rows.index
        lo, hi, x_row = _gather_row(f, builder, nv, acc, row)
        # the residual of ReLU: z = (even + odd) + b, e = z [z > 0] - x, g = (2 I e) [z > 0]
        xc = builder.add(x_row, f.c0)
        loss = zero
        g = []
        for k in range(nv):
            z = builder.fadd(builder.load(acc[0][k]), builder.load(acc[1][k]))
            z = builder.fadd(z, _vector_at(f, builder, bias.data, f.c0, k, nv, rem))
            on = builder.select(builder.fcmp_ordered(">", z, zero), one, zero)
            x = _vector_at(f, builder, f.data(2), xc, k, nv, rem)
            err = _fma(builder, z, on, builder.fneg(x))
            ge = builder.fmul(_vector_at(f, builder, imp2.data, f.c0, k, nv, rem), err)
            loss = _fma(builder, ge, err, loss)
            gk = builder.fmul(ge, on)
            g.append(gk)
            off = builder.add(f.c0, _i64(k * f.lanes))
            total = builder.fadd(_vector_at(f, builder, gsum.data, f.c0, k, nv, rem), gk)
            if k < nv - 1:
                p = builder.bitcast(builder.gep(gsum.data, [off]), f.vty.as_pointer())
                builder.store(total, p, align=f.size)
            else:
                _partial_store(builder, total, gsum.data, off, rem)
        row_loss = builder.extract_element(loss, ir.Constant(_I32, 0))
        for lane in range(1, f.lanes):
            term = builder.extract_element(loss, ir.Constant(_I32, lane))
            row_loss = builder.fadd(row_loss, term)
        if row_loss.type != ir.DoubleType():
            row_loss = builder.fpext(row_loss, ir.DoubleType())
        lp = builder.gep(rowloss.data, [row])
        builder.store(builder.fadd(builder.load(lp), row_loss), lp)
        # S[i] += x_i g over the row's entries (and x_i = 0 after the last block)
        _scatter_row(f, builder, g, lo, hi, x_row, clear)


@intrinsic
def _gram_relu_block(
    typingctx, nv, ptr, idx, X, M, S, count, c0, d, bias, imp2, gsum, rowloss, clear
):
    """:func:`_emit_gram_relu` for ``nv`` (1 to :data:`BLOCK_VECTORS`) vectors, behind a switch
    (``clear``: zero the listed entries of ``X`` once read)."""
    if any(a.dtype != X.dtype for a in (M, S, bias, imp2, gsum)) or rowloss.dtype != types.float64:
        return None  # the arrays of one float dtype, the row losses float64
    sig = types.void(
        types.int64, ptr, idx, X, M, S, types.int64, types.int64, types.int64,
        bias, imp2, gsum, rowloss, types.boolean,
    )  # fmt: skip

    def codegen(context, builder, signature, args):
        f = _Loop(context, builder, signature.args[1:9], args[1:9])
        extra = [
            context.make_array(t)(context, builder, a)
            for t, a in zip(signature.args[9:13], args[9:13])
        ]
        flag = args[13]  # a boolean value (i1; compared with zero if stored wider)
        if flag.type.width != 1:
            flag = builder.icmp_unsigned("!=", flag, ir.Constant(flag.type, 0))
        extra.append(flag)
        _by_vector_count(
            builder, args[0], BLOCK_VECTORS, lambda k: _emit_gram_relu(f, builder, k, extra)
        )
        return context.get_dummy_value()

    return sig, codegen


@njit
def gram_relu_rows(ptr, idx, X, M, S, count, n, bias, imp2, gsum, rowloss, clear=False):
    """A sub-batch in the Gram space with ReLU, without storing ``Z`` or ``G``.

    For each ``row < count`` and each block of columns: ``z = X[row] M + b``
    (:func:`gather_rows`, the same sums), then ``e = relu(z) - X[row]``, ``g =
    (imp2 e) [z > 0]``, ``gsum += g``, ``rowloss[row] += sum(imp2 e e)`` (in
    the dtype of ``X``, then float64), then ``S[i] += X[row, i] g`` over the
    row's entries, in order (:func:`scatter_rows`).  ``M`` and ``S`` (n,
    ``padded_columns(n)``), ``bias``, ``imp2`` and ``gsum`` (n) in the dtype of
    ``X``; ``rowloss`` float64 (``count``).  Where ``z`` is finite, ``g`` is
    that of :func:`gather_rows`, the residual of the training kernels and
    :func:`scatter_rows` bit for bit; a non-finite ``z`` makes the row's loss
    non-finite.  With ``clear`` the listed entries of ``X``'s rows are zero on
    return (each set to zero in the row's last pass, once read).
    """
    w = lanes(M.itemsize)
    step = BLOCK_VECTORS * w
    for c0 in range(0, n, step):
        nv = min(BLOCK_VECTORS, (n - c0 + w - 1) // w)
        last = clear and c0 + step >= n
        _gram_relu_block(nv, ptr, idx, X, M, S, count, c0, n, bias, imp2, gsum, rowloss, last)


@intrinsic
def _compress_rows(typingctx, X, count, ptr, idx):
    """The AVX-512 loop of :func:`compact_rows`: per row, eight places at a time."""
    sig = types.void(X, types.int64, ptr, idx)

    def codegen(context, builder, signature, args):
        allow_512(builder)
        xa, _, pa, ia = (
            context.make_array(t)(context, builder, v) if isinstance(t, types.Array) else v
            for t, v in zip(signature.args, args)
        )
        count = args[1]
        size = signature.args[0].dtype.bitwidth // 8
        vty = ir.VectorType(context.get_value_type(signature.args[0].dtype), 8)
        ivty = ir.VectorType(_I64, 8)
        i8 = ir.IntType(8)
        n = cgutils.unpack_tuple(builder, xa.shape, 2)[1]
        per_row = builder.sdiv(cgutils.unpack_tuple(builder, xa.strides, 2)[0], _i64(size))
        whole = builder.sdiv(n, _i64(8))
        compress = cgutils.get_or_insert_function(
            builder.module,
            ir.FunctionType(ivty, [ivty, ivty, i8]),
            "llvm.x86.avx512.mask.compress.q.512",
        )
        popcount = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(i8, [i8]), "llvm.ctpop.i8"
        )
        k = cgutils.alloca_once_value(builder, _i64(0))
        lane_index = ir.Constant(ivty, list(range(8)))
        with cgutils.for_range(builder, count) as rows:
            row = rows.index
            builder.store(builder.load(k), builder.gep(pa.data, [row]))
            x_row = builder.mul(row, per_row)
            with cgutils.for_range(builder, whole) as cols:
                j0 = builder.mul(cols.index, _i64(8))
                xp = builder.gep(xa.data, [builder.add(x_row, j0)])
                x = builder.load(builder.bitcast(xp, vty.as_pointer()), align=size)
                mask = builder.bitcast(builder.fcmp_unordered("!=", x, ir.Constant(vty, None)), i8)
                places = builder.add(lane_index, _splat(builder, j0, ivty))
                kk = builder.load(k)
                out = builder.call(compress, [places, places, mask])  # the places first
                op = builder.bitcast(builder.gep(ia.data, [kk]), ivty.as_pointer())
                builder.store(out, op, align=8)
                step = builder.zext(builder.call(popcount, [mask]), _I64)
                builder.store(builder.add(kk, step), k)
            start = builder.mul(whole, _i64(8))
            with cgutils.for_range_slice(builder, start, n, _i64(1)) as (j, _):
                x = builder.load(builder.gep(xa.data, [builder.add(x_row, j)]))
                kk = builder.load(k)
                builder.store(j, builder.gep(ia.data, [kk]))
                nonzero = builder.fcmp_unordered("!=", x, ir.Constant(x.type, 0.0))
                builder.store(builder.add(kk, builder.zext(nonzero, _I64)), k)
        builder.store(builder.load(k), builder.gep(pa.data, [count]))
        return context.get_dummy_value()

    return sig, codegen


_COMPACT_DOC = """The places of the nonzero entries of ``X``'s first ``count`` rows, in CSR form.

    ``idx[ptr[row]:ptr[row + 1]]`` lists the columns ``j`` (increasing) where
    ``X[row, j] != 0`` (NaN counts as nonzero); ``ptr`` has at least ``count
    + 1`` entries, ``idx`` (int64) room for ``count`` whole rows and 8 more
    entries.  ``X``: C-contiguous rows, float64 or float32.  Eight places at
    a time where :data:`COMPRESS`, else one at a time (the same lists).
    """


@kernel_njit
def _compact_compressed(X, count, ptr, idx):
    _compress_rows(X, count, ptr, idx)


@kernel_njit
def _compact_serial(X, count, ptr, idx):
    n = X.shape[1]
    k = 0
    for row in range(count):
        ptr[row] = k
        for j in range(n):
            idx[k] = j
            k += X[row, j] != 0
    ptr[count] = k


_compact_compressed.__doc__ = _compact_serial.__doc__ = _COMPACT_DOC
#: :func:`compact_rows`: only the chosen form is compiled (the other may not exist on the target)
compact_rows = _compact_compressed if COMPRESS else _compact_serial
