"""Tunables of fastsuper: every block size, threshold, tile size and thread count.

The kernels read these module attributes when they are called (the CUDA
kernels' compile-time sizes ``CUDA_MAX_THREADS`` and ``CUDA_MAX_POWER`` when
their module is imported), so a test or an experiment may change one with
``monkeypatch.setattr(config, NAME, value)``.  Results never depend on the
thread count; they do depend on the sample block sizes, which fix the order
of the sums (``DEFAULT_BLOCK``, ``GRAD_BLOCK``).  The Monte-Carlo path cost
model's fitted constants live beside it in :mod:`fastsuper.mc.paths`.
"""

from __future__ import annotations

# --------------------------------------------------------------------------
# memory

#: most bytes one call may allocate; a request estimated beyond it is refused before
#: anything is allocated (``None``: the machine's memory, or its cgroup limit)
MEMORY_LIMIT_BYTES = None

# --------------------------------------------------------------------------
# Monte-Carlo estimation (CPU)

#: smallest positive feature probability the samplers take: their geometric gaps between
#: active features, up to ``-log(2**-54) / p``, must fit an int64 (``p > 4.1e-18``)
P_MIN_SAMPLED = 1e-17
#: samples per block: the unit of parallel work and of the fixed reduction order
DEFAULT_BLOCK = 2048
#: largest A = W^T W (bytes) the column paths may allocate
MAX_A_BYTES = 1 << 30
#: largest ``n x tile`` panel of A for which path "columns_blocked" uses its wide
#: tiles (512-byte rows; see docs/benchmarks.md for the tile-width measurement)
COLUMN_TILE_BYTES = 1 << 22
#: CSR entries (about) that path "columns_blocked" draws at once
COLUMN_SUB_ENTRIES = 1 << 15
#: samples per matrix product of path "blocked"
GEMM_ROWS = 32
#: bytes of one SIMD tile row; a tile is ``TILE_BYTES // itemsize`` outputs wide,
#: ``NARROW_TILE_BYTES // itemsize`` (two vectors) when ``n`` is large
TILE_BYTES, NARROW_TILE_BYTES = 512, 128
#: bytes of one vector register the SIMD tile kernel targets
VECTOR_BYTES = 64
#: alignment (bytes) of the panels and tile buffers
VECTOR_ALIGN = 64
#: vector width (bits) the elementwise activation loops of ``core.vecmath`` are compiled
#: for where the CPU has it (elementwise: the numbers do not depend on it)
ACTIVATION_VECTOR_BITS = 512
#: outputs (about) over which path "columns_blocked" applies a vectorised activation at once:
#: the tiles of ``max(1, PHI_GROUP_ELEMENTS // width)`` samples
PHI_GROUP_ELEMENTS = 256

# --------------------------------------------------------------------------
# BLAS threads

#: OpenBLAS multiplies on one thread when m*n*k is at most this
#: (``SMP_THRESHOLD_MIN * GEMM_MULTITHREAD_THRESHOLD`` in its interface/gemm.c):
#: products inside parallel kernels are sized to stay below it, so BLAS never
#: starts threads of its own there (whatever OPENBLAS_NUM_THREADS says)
BLAS_SINGLE_THREAD_MNK = 65536 * 4
#: products of at most this many multiply-adds run on one BLAS thread when a
#: parallel kernel follows
SINGLE_THREAD_FMA = 1 << 31

# --------------------------------------------------------------------------
# exact loss, low-order terms, bounds, geometry

#: rows of A per parallel work item of the exact power-sum and gradient kernels
EXACT_ROWS_PER_ITEM = 16
#: floating-point operations (``n**2 (4d + 4m)``) from which an exact loss-and-gradient
#: evaluation runs its row kernels in parallel; below, on their serial twins
EXACT_PARALLEL_FLOPS = 4e6
#: floating-point operations (``n**2 (4d + 4m)``) below which an exact evaluation runs the
#: serial kernels of :mod:`fastsuper.exact.kernels_small` (``A``'s symmetry, ``A`` formed in
#: the kernel; the size alone decides, so the numbers never depend on the thread count)
EXACT_SMALL_FLOPS = 4e6
#: rows of A per block of the fused exact kernel (:mod:`fastsuper.exact.kernels_fused`)
EXACT_FUSED_ROWS = 64
#: columns of A per tile of the fused exact kernel (at most its buffers' row stride, 512;
#: :class:`fastsuper.ExactEvaluator` runs the tile products on one BLAS thread)
EXACT_FUSED_COLS = 512
#: row-block groups of the fused exact kernel: its parallel work items, each with a d x n
#: gradient accumulator (a fixed number, so the sums do not depend on the thread count)
EXACT_FUSED_GROUPS = 8
#: features per work item of the moment-tensor exact kernel
#: (:mod:`fastsuper.exact.kernels_tensor`)
EXACT_TENSOR_COLS = 64
#: work items of the moment-tensor exact kernel, each with its own moment sums (a fixed
#: number, so the sums do not depend on the thread count)
EXACT_TENSOR_GROUPS = 8
#: the moment-tensor exact kernel's cost per feature and monomial of degree at most 2m, and
#: per feature, in units of the fused kernel's counted flops (``n**2 (4d + 4m)`` for the
#: whole evaluation): :class:`fastsuper.ExactEvaluator` takes the cheaper of the two from
#: :data:`EXACT_FUSED_FROM` features on
EXACT_TENSOR_COST = 26.0
EXACT_TENSOR_FEATURE_COST = 20_000.0
#: n from which :class:`fastsuper.ExactEvaluator` uses the fused or the moment-tensor kernel
#: by default (the cheaper), and :func:`fastsuper.exact_loss_grad` and
#: :func:`fastsuper.exact_gain_grad` run it (values to round-off of the row kernels, not bit
#: for bit; faster and without the n x n matrix from there on: docs/benchmarks.md, "Fused
#: exact kernel"); None: never
EXACT_FUSED_FROM = 512
#: prepared evaluators kept per thread for the calls of :func:`fastsuper.exact_loss_grad`
#: and :func:`fastsuper.exact_gain_grad` (:func:`fastsuper.exact.prepared.prepared_call`)
EXACT_CACHE_SIZE = 8
#: parameters up to which :func:`fastsuper.fit_exact` runs SciPy's L-BFGS-B with every BLAS
#: library on one thread (OpenBLAS splits no vector operation below 10 000 entries)
LBFGS_SINGLE_THREAD_PARAMS = 10_000
#: the most bytes of ``A = W^T W`` buffers those cached evaluators hold per thread (larger
#: problems take the general path, where the fixed costs do not matter)
EXACT_CACHE_BYTES = 64 * 2**20
#: n below which the k = 1 terms run on the serial twin of their kernel
LOW_ORDER_SERIAL_BELOW = 64
#: relative tolerance of the adaptive Gauss-Kronrod quadrature of the k = 1 terms
#: of smooth activations (:mod:`fastsuper.exact.quadrature`), and its most segments per pair
LOW_ORDER_QUAD_RTOL = 1e-11
LOW_ORDER_QUAD_SEGMENTS = 400
#: entries of A formed at once by :func:`fastsuper.loss_bounds`
BOUNDS_BLOCK_ELEMS = 1 << 22
#: entries (rows x (groups + n) x moment orders) of one row block of the grouped closed form
GROUPED_BLOCK_ELEMS = 1 << 22
#: entries of the Gram matrix formed at once by the geometry functions
GEOMETRY_BLOCK_ELEMS = 1 << 20

# --------------------------------------------------------------------------
# training

#: samples per block of the sampled gradient (the unit of parallel work and of the sum order)
GRAD_BLOCK = 2048
#: blocks whose partial gradients are held in memory at once by the sampled gradient
GRAD_BLOCKS_PER_WAVE = 64
#: training multiplies the dense sub-batch of inputs by BLAS when this many times the
#: expected active features (``sum(p)``) is at least ``n``, else it runs the sparse-row
#: loops of :mod:`fastsuper.core.sparse_rows` over the active entries: float64 (from
#: ``p = 0.4``) and float32 (BLAS twice as fast; from ``p = 1/6``)
DENSE_X_RATIO = 2.5
DENSE_X_RATIO_SINGLE = 6.0
#: training works in the Gram space of an instance whose inputs stay sparse
#: (:func:`fastsuper.train.kernels_cpu.run_grad_blas`): ``z = (W^T W) x`` and the gradient
#: ``W (S + S^T)`` with ``S = sum x g^T``, ``2 n`` multiply-adds per active feature instead
#: of the three ``d n`` products per sample, where the expected active features are at most
#: ``TRAIN_GRAM_ACTIVE`` times ``d`` and the two ``n x n`` matrices it updates take at most
#: ``TRAIN_GRAM_BYTES`` (they must stay in the core's cache: measured on AMD Zen 4, 1 MiB of
#: L2, the break-even is near ``0.8 d`` at ``n = 100`` and ``0.15 d`` at ``n = 400``)
TRAIN_GRAM_ACTIVE = 0.75
TRAIN_GRAM_BYTES = 512 * 1024
#: fewest rows of a training sub-batch on the BLAS path (its products run on one BLAS
#: thread whatever their size)
TRAIN_BLAS_MIN_ROWS = 64
#: features from which a training sub-batch forms ``W g`` as ``G W^T`` (OpenBLAS's
#: transposed kernel) in blocks of ``TRAIN_GWT_ROWS`` rows, instead of one ``G W^T``
#: product with the stored ``W^T``
TRAIN_GWT_FROM = 256
TRAIN_GWT_ROWS = 32
#: features from which a training sub-batch's products run on weights and codes whose rows
#: are padded with zeros to whole 64-byte lines (``d = 30`` to 32 columns; the same numbers)
TRAIN_PAD_FROM = 256
#: expected active features per sample (``n p``) from which training draws the active
#: sets of independent features a chunk of gaps at a time
#: (:func:`fastsuper.core.laws.draw_bernoulli_chunked`; the same samples either way)
CHUNKED_GAPS_FROM = 2.0
#: expected active features per sample from which training's BLAS sub-batches draw such
#: samples with U[0, 1] values into the dense inputs a wide chunk of gaps at a time, without
#: a branch per gap (:func:`fastsuper.train.kernels_cpu.draw_rows_wide`; the same samples)
TRAIN_WIDE_GAPS_FROM = 16.0
#: training with ``d <= 4`` and at most this many features draws and differentiates
#: :data:`DENSE_ROWS` samples at a time as dense columns
#: (:func:`fastsuper.core.laws.draw_dense`; the same samples, sums over samples in a fixed order)
DENSE_N_MAX = 8
#: samples per sub-batch of that dense path (a power of 2)
DENSE_ROWS = 64
#: the dense path draws keys and first gaps ``DENSE_KEY_BLOCKS * DENSE_ROWS`` samples at a time
DENSE_KEY_BLOCKS = 4
#: the dense path's loops over samples run over whole blocks of this many columns (a
#: multiple of the widest vector's lanes; divides ``DENSE_ROWS``): no scalar remainder loops
DENSE_PAD = 16

# --------------------------------------------------------------------------
# threads

#: ``OMP_WAIT_POLICY`` put in the environment when fastsuper is imported, unless already
#: set: ``"PASSIVE"`` lets Numba's OpenMP threads sleep at the end of a parallel region
#: instead of spinning (see docs/benchmarks.md, "Threading layers"); ``None``: leave it
OMP_WAIT_POLICY = "PASSIVE"

# --------------------------------------------------------------------------
# Dask

#: multiply-adds per chunk aimed at by the default chunk size
DASK_TASK_WORK = 2e8
#: chunks per worker thread aimed at for small runs
DASK_TASKS_PER_THREAD = 4
#: largest A = W^T W (bytes) sent inside the task graph
DASK_MAX_EMBEDDED_A_BYTES = 4 << 20

# --------------------------------------------------------------------------
# CUDA

#: threads per block of the sampler kernels (one thread per sample)
SAMPLE_THREADS = 128
#: threads per block of the Monte-Carlo kernel (power of two, <= CUDA_MAX_THREADS)
MC_THREADS = 128
#: threads per block of the power-sum and Welford kernels (one thread per row / block)
POWER_THREADS = 128
#: threads per block of the A = W^T W kernel (one thread per entry)
GRAM_THREADS = 128
#: most threads per block of the sampled-gradient kernel (a thread block per sample block)
GRAD_THREADS = 128
#: Adam steps per launch of the device training kernel (all instances, a thread block each)
CUDA_TRAIN_STEPS = 256
#: samples per chunk (whole sample blocks; at least one block)
CHUNK_SAMPLES = 1 << 20
#: device scratch a chunk may use (sampler sink, CSR arrays, per-sample results)
SCRATCH_BYTES = 512 << 20
#: resident threads per multiprocessor assumed when sizing grid-stride grids
THREADS_PER_SM = 2048
#: blocks of a grid-stride grid on the simulator (which runs blocks one by one)
SIMULATOR_MAX_BLOCKS = 2
#: largest thread block of the Monte-Carlo kernel (size of its shared buffers; compile time)
CUDA_MAX_THREADS = 256
#: largest order R of the power-sum kernel (size of its per-thread accumulators; compile time)
CUDA_MAX_POWER = 64
