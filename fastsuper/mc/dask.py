"""Dask backend: the Monte-Carlo estimator on a ``dask.distributed`` cluster.

``estimate_loss(..., backend="dask", client=client)`` splits the samples
``start .. start + n_samples - 1`` into *chunks* of whole sample blocks.  A
chunk is a pure task keyed by the run's inputs and the chunk's first sample
index; it runs the CPU kernel (:func:`fastsuper.mc.kernels_cpu.mc_blocks`) on its
blocks and returns their per-block statistics (and per-feature sums).  The
client puts the blocks back in sample order and merges them serially, exactly
as the CPU backend does, so the result equals ``backend="cpu"``'s bit for bit
(on workers with the same CPU type and libraries as the caller: the kernels
are compiled per machine).  One more condition: the caller
and the workers must run the same *compiled* kernel.  A fastmath kernel that a
process compiles afresh can differ in the last bit from the same kernel loaded
from Numba's cache (the compiler's choices about fused multiply-adds and
reassociation are not the same in the two cases), so the very first run in a
fresh environment -- the caller compiles, the workers load what it cached --
may differ from the workers' chunks in the last bit of the mean.  Later runs,
or a caller that loaded the cache too, agree bit for bit.

Fault tolerance comes from Dask: a chunk lost with a worker is recomputed
from its task (same key, same samples, same numbers).  The model, the input
law and ``A = W^T W`` travel once, in a task of their own that every chunk
depends on (a worker fetches it once), so it too is recomputed if lost.

Nothing here imports Dask until a function is called: ``import fastsuper``
works without it, and :func:`require_distributed` raises an ``ImportError``
naming the ``distributed`` extra when it is missing.

Tunables (module constants, read at each call)
----------------------------------------------
config.DASK_TASK_WORK
    Multiply-adds aimed at per chunk by :func:`default_chunk_size` (a
    fraction of a second of one core).
config.DASK_TASKS_PER_THREAD
    Chunks per worker thread aimed at for runs too small to fill
    ``config.DASK_TASK_WORK``-sized chunks.
config.DASK_MAX_EMBEDDED_A_BYTES
    ``A`` up to this size is computed by the caller and sent with the task;
    a larger one is computed on a worker (``W.T @ W``, the caller's
    expression), which keeps the task graph small.
"""

from __future__ import annotations

import ast
import contextlib
import os
import sys
import threading
import time

import numba
import numpy as np

from fastsuper.core import config
from fastsuper.core import validation as v
from fastsuper.core.blas import threads_per_worker
from fastsuper.core.laws import SparseInputs
from fastsuper.core.model import Model
from fastsuper.mc.common import LossEstimate, check_run, finish
from fastsuper.mc.cpu import run_blocks
from fastsuper.mc.kernels_cpu import N_STATS
from fastsuper.mc.paths import choose_path, gram, path_operand

__all__ = [
    "DISTRIBUTED_REQUIRED_MESSAGE",
    "check_client",
    "check_main_guard",
    "guarded_by_main",
    "default_chunk_size",
    "estimate_loss_dask",
    "host_threads",
    "worker_numba_threads",
    "local_client",
    "require_distributed",
]

#: The error raised when dask.distributed is missing.
DISTRIBUTED_REQUIRED_MESSAGE = (
    "backend='dask' needs dask.distributed: pip install 'fastsuper[distributed]'"
)

_MASK64 = (1 << 64) - 1


def require_distributed():
    """Return the :mod:`distributed` module, or raise a clear ``ImportError``.

    Returns
    -------
    module
        :mod:`distributed`.

    Raises
    ------
    ImportError
        If dask.distributed is not installed; the message names the
        ``distributed`` extra.
    """
    try:
        import distributed
    except ImportError as exc:
        raise ImportError(f"{DISTRIBUTED_REQUIRED_MESSAGE} [{exc}]") from exc
    return distributed


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def local_client(n_workers: int | None = None, **cluster_kwargs):
    """A ``LocalCluster`` of single-threaded worker processes and its client.

    Used by ``estimate_loss(..., backend="dask")`` without a ``client``.
    Starting a cluster is slow (each worker process imports NumPy, Numba and
    fastsuper and loads the cached kernels), so for more than one call create
    a client once and pass it.

    Parameters
    ----------
    n_workers : int, optional
        Worker processes (default: the CPUs this process may use).  Each has
        one Dask thread and one Numba thread (``NUMBA_NUM_THREADS=1``).
    **cluster_kwargs
        Passed on to :class:`distributed.LocalCluster`.

    Yields
    ------
    distributed.Client

    Examples
    --------
    >>> import numpy as np, fastsuper as fs
    >>> from fastsuper.mc.dask import local_client
    >>> model = fs.Model(np.eye(2, 8), exponent=3)
    >>> inputs = fs.SparseInputs(8, p=0.1)
    >>> with local_client(2) as client:  # doctest: +SKIP
    ...     est = fs.estimate_loss(model, inputs, 10**6, backend="dask", client=client)
    """
    distributed = require_distributed()
    check_main_guard()
    if n_workers is None:
        n_workers = _cpu_count()
    n_workers = v.check_int("n_workers", n_workers, minimum=1)
    opts = dict(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": ":0"},  # no dashboard, HTTP routes on a free port
        env={"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
    )
    opts.update(cluster_kwargs)
    with distributed.LocalCluster(**opts) as cluster, distributed.Client(cluster) as client:
        yield client


def _is_main_test(node: ast.expr) -> bool:
    """Whether ``node`` is ``__name__ == "__main__"`` (either way round)."""
    if not (isinstance(node, ast.Compare) and len(node.ops) == 1):
        return False
    sides = [node.left, node.comparators[0]]
    names = [s.id for s in sides if isinstance(s, ast.Name)]
    consts = [s.value for s in sides if isinstance(s, ast.Constant)]
    return isinstance(node.ops[0], ast.Eq) and names == ["__name__"] and consts == ["__main__"]


def guarded_by_main(source: str, lineno: int) -> bool:
    r"""Whether line ``lineno`` of the module ``source`` lies under ``if __name__ == "__main__":``.

    Examples
    --------
    >>> from fastsuper.mc.dask import guarded_by_main
    >>> src = "import x\nx.run()\nif __name__ == '__main__':\n    x.run()\n"
    >>> guarded_by_main(src, 2), guarded_by_main(src, 4)
    (False, True)
    """
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.If) and _is_main_test(node.test):
            if node.body[0].lineno <= lineno <= node.body[-1].end_lineno:
                return True
    return False


def check_main_guard() -> None:
    """Refuse to start worker processes from a script's top level without a ``__main__`` guard.

    Dask starts a local cluster's workers with ``spawn``: each re-imports the
    caller's main script, which without the guard would run the call again in
    every worker (the workers then fail with "Nanny failed to start").  This
    finds the script's top-level frame on the call stack and raises a clear
    RuntimeError when it is not under ``if __name__ == "__main__":``.
    Interactive sessions, notebooks, ``python -c`` and ``python -m package``
    are never re-imported and pass.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    spec = getattr(main, "__spec__", None)
    if path is None or (spec is not None and spec.name.endswith("__main__")):
        return
    import dask

    if dask.config.get("distributed.worker.multiprocessing-method", "spawn") == "fork":
        return  # pragma: no cover - forked workers do not re-import the script
    frame = sys._getframe(1)
    while frame is not None and not (
        frame.f_globals is vars(main) and frame.f_code.co_name == "<module>"
    ):
        frame = frame.f_back
    if frame is None:
        return
    lineno = frame.f_lineno
    try:
        with open(path) as fh:
            source = fh.read()
        guarded = guarded_by_main(source, lineno)
    except (OSError, SyntaxError, ValueError):  # pragma: no cover - no readable source
        return
    if not guarded:
        raise RuntimeError(
            f"backend='dask' starts a local Dask cluster whose worker processes re-import the "
            f"script {path}, and line {lineno} of it runs at import time, so every worker would "
            "run it again and the cluster cannot start. Put the script's work under "
            '`if __name__ == "__main__":` (Python\'s rule for code that starts processes), or '
            "pass client= a dask.distributed.Client started under that guard"
        )


def check_client(client):
    """``client`` if it is a :class:`distributed.Client`, else a clear ``TypeError``."""
    distributed = require_distributed()
    if not isinstance(client, distributed.Client):
        raise TypeError(
            f"client must be a dask.distributed.Client (or None for a local cluster), got "
            f"{type(client).__name__}"
        )
    return client


def default_chunk_size(
    model: Model, inputs: SparseInputs, n_samples: int, block_size: int, n_threads: int, path: str
) -> int:
    """Samples per Dask task: whole blocks, about :data:`config.DASK_TASK_WORK` multiply-adds.

    Runs too small for that are cut into about :data:`config.DASK_TASKS_PER_THREAD`
    chunks per worker thread (never less than a block), so every worker has
    work and a lost chunk costs little.

    Examples
    --------
    >>> import numpy as np, fastsuper as fs
    >>> from fastsuper.mc.dask import default_chunk_size
    >>> model, inputs = fs.Model(np.eye(10, 1000)), fs.SparseInputs(1000, p=1e-3)
    >>> default_chunk_size(model, inputs, 10**8, 2048, 8, "columns") % 2048
    0
    """
    k = inputs.expected_active
    per_sample = (
        model.n * max(k, 1.0) if path in ("columns", "columns_blocked") else model.d * (k + model.n)
    )
    work_blocks = max(1, int(config.DASK_TASK_WORK / (per_sample * block_size)))
    n_blocks = -(-n_samples // block_size)
    spread_blocks = max(1, -(-n_blocks // (config.DASK_TASKS_PER_THREAD * max(n_threads, 1))))
    return min(work_blocks, spread_blocks) * block_size


# --------------------------------------------------------------------------
# worker side

_LOCK = threading.Lock()


def _kernel_lock():
    """A lock for Numba's ``workqueue`` threading layer (not thread-safe), else nothing."""
    import numba

    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel kernel has run in this process yet: be safe
        return _LOCK
    return _LOCK if layer == "workqueue" else contextlib.nullcontext()


#: the arrays of a model and an input law that the kernel reads, as (object, attribute)
_ARRAYS = (("model", "W"), ("model", "b"), ("inputs", "importance"), ("inputs", "p"),
           ("law", "support"), ("law", "cumprobs"))  # fmt: skip


def _writeable_flags(model: Model, inputs: SparseInputs) -> tuple:
    owners = {"model": model, "inputs": inputs, "law": inputs.law}
    return tuple(
        None if getattr(owners[o], a) is None else bool(getattr(owners[o], a).flags.writeable)
        for o, a in _ARRAYS
    )


def _as_on_caller(x: np.ndarray, writeable: bool) -> np.ndarray:
    """``x`` aligned, C-contiguous and with the caller's ``writeable`` flag.

    Arrays unpickled from network frames may be unaligned or read-only, and
    Numba compiles another specialisation for those (with another
    vectorisation of the reductions): the numbers would differ in the last
    bits from the caller's.
    """
    if not (x.flags.aligned and x.flags.c_contiguous) or (writeable and not x.flags.writeable):
        x = np.array(x, order="C", copy=True)
    if not writeable and x.flags.writeable:
        x = x.view()
        x.setflags(write=False)
    return x


def _payload(model: Model, inputs: SparseInputs, A, path: str, flags: tuple):
    """Everything a chunk needs, as one task result (recomputed if a worker is lost).

    ``flags`` are the caller's writeable flags of the arrays of :data:`_ARRAYS`.
    """
    owners = {"model": model, "inputs": inputs, "law": inputs.law}
    for (o, a), w in zip(_ARRAYS, flags):
        if w is not None:
            setattr(owners[o], a, _as_on_caller(getattr(owners[o], a), w))
    if A is not None and path in ("columns", "columns_blocked"):
        A = _as_on_caller(A, True)
    else:
        A = None
    return model, inputs, path_operand(model, path, A)  # the CPU backend's operand


def worker_numba_threads(host_threads: dict) -> None:
    """Numba threads of this Dask worker thread: the CPUs of its process shared among the Dask
    threads of every worker on its host (``host_threads``: host -> their sum)."""
    try:
        import distributed

        worker = distributed.get_worker()
    except (ImportError, ValueError):  # run outside a worker (tests call the task directly)
        return
    host = worker.address.rsplit(":", 1)[0]
    sharing = host_threads.get(host, getattr(worker.state, "nthreads", 1))
    numba_threads = threads_per_worker(sharing)
    if numba_threads != numba.get_num_threads():
        numba.set_num_threads(numba_threads)


def host_threads(client) -> dict:
    """Dask threads per host (address without port) of ``client``'s workers."""
    out: dict = {}
    for addr, info in client.scheduler_info(n_workers=-1)["workers"].items():
        host = addr.rsplit(":", 1)[0]
        out[host] = out.get(host, 0) + int(info.get("nthreads", 1))
    return out


def _chunk_stats(payload, seed_u64, first, count, block, path, want_pf, sharing=None):
    """Per-block statistics of samples ``first .. first + count - 1`` (a Dask task).

    ``sharing`` (host -> Dask threads) sets the Numba threads of the worker
    thread (:func:`worker_numba_threads`); the statistics do not depend on it.
    """
    model, inputs, A = payload
    if sharing:
        worker_numba_threads(sharing)
    with _kernel_lock():
        return run_blocks(model, inputs, A, path, want_pf, seed_u64, first, count, block)


# --------------------------------------------------------------------------
# client side


class _Run:
    """One Dask estimate: the chunk plan, the submitted futures and the merge."""

    def __init__(self, model, inputs, n_samples, seed, path, block, start, want_pf, chunk):
        self.model, self.inputs = model, inputs
        self.n_samples, self.seed, self.path = n_samples, seed, path
        self.block, self.start, self.want_pf = block, start, want_pf
        self.chunk = chunk
        self.use_cols = path in ("columns", "columns_blocked")
        self.bounds = [
            (lo, min(chunk, n_samples - lo)) for lo in range(0, n_samples, chunk)
        ]  # (offset, count) of each chunk

    def _token(self) -> str:
        from dask.base import tokenize

        m, inp = self.model, self.inputs
        return tokenize(
            "fastsuper-mc-v1",
            m.W,
            m.bias,
            m._act_args(),
            inp.importance,
            inp._kernel_params(),
            _writeable_flags(m, inp),
            self.path,
            self.want_pf,
            self.block,
        )

    def submit(self, client):
        """Submit the payload and every chunk; returns the chunk futures in chunk order."""
        token = self._token()
        A = None
        if (
            self.use_cols
            and self.model.n**2 * self.model.dtype.itemsize <= config.DASK_MAX_EMBEDDED_A_BYTES
        ):
            A = gram(self.model)  # the CPU backend's A, bit for bit
        payload = client.submit(
            _payload,
            self.model,
            self.inputs,
            A,
            self.path,
            _writeable_flags(self.model, self.inputs),
            key=f"fastsuper-data-{token}",
        )
        seed_u64 = self.seed & _MASK64
        sharing = host_threads(client)
        self.futures = [
            client.submit(
                _chunk_stats,
                payload,
                seed_u64,
                self.start + lo,
                count,
                self.block,
                self.path,
                self.want_pf,
                sharing,
                key=f"fastsuper-mc-{token}-{seed_u64}-{self.start + lo}-{count}",
                pure=True,
            )
            for lo, count in self.bounds
        ]
        self.payload = payload
        return self.futures

    def collect(self, client, t0: float) -> LossEstimate:
        """Wait for every chunk, merge in sample order, and release the futures."""
        distributed = require_distributed()
        nb = -(-self.n_samples // self.block)
        n = self.model.n
        stats = np.zeros((nb, N_STATS))
        pf1 = np.zeros((nb if self.want_pf else 0, n))
        pf2 = np.zeros((nb if self.want_pf else 0, n))
        where = {f.key: i for i, f in enumerate(self.futures)}
        try:
            for fut, (s, p1, p2) in distributed.as_completed(self.futures, with_results=True):
                lo = self.bounds[where[fut.key]][0]
                b0 = lo // self.block
                stats[b0 : b0 + s.shape[0]] = s
                if self.want_pf:
                    pf1[b0 : b0 + s.shape[0]] = p1
                    pf2[b0 : b0 + s.shape[0]] = p2
        except BaseException:
            client.cancel([*self.futures, self.payload])  # stop the rest of the work
            raise
        finally:
            self.futures, self.payload = [], None  # release the results on the cluster
        return finish(
            stats,
            pf1,
            pf2,
            self.model,
            self.inputs,
            self.n_samples,
            self.seed,
            self.path,
            self.want_pf,
            time.perf_counter() - t0,
            method="naive",
            backend="dask",
        )


def plan_run(
    model, inputs, n_samples, seed, path, block_size, start, per_feature, chunk_size, n_threads
) -> _Run:
    n_samples, seed, block, start = check_run(
        model, inputs, n_samples, seed, block_size=block_size, start=start, path=path,
        per_feature=per_feature,
    )  # fmt: skip
    if chunk_size is not None:
        chunk_size = v.check_int("chunk_size", chunk_size, minimum=1)
        if chunk_size % block:
            raise ValueError(
                f"chunk_size must be a multiple of block_size = {block} (whole blocks keep the "
                f"result equal to the CPU backend's), got {chunk_size}; use "
                f"{max(1, round(chunk_size / block)) * block}"
            )
    if path == "auto":
        path = choose_path(model, inputs, n_samples)
    if chunk_size is None:
        chunk_size = default_chunk_size(model, inputs, n_samples, block, n_threads, path)
    return _Run(model, inputs, n_samples, seed, path, block, start, bool(per_feature), chunk_size)


def estimate_loss_dask(
    model: Model,
    inputs: SparseInputs,
    n_samples: int,
    seed: int = 0,
    path: str = "auto",
    block_size: int = config.DEFAULT_BLOCK,
    start: int = 0,
    per_feature: bool = False,
    *,
    client=None,
    chunk_size: int | None = None,
) -> LossEstimate:
    """Monte-Carlo loss and gain on a Dask cluster (``estimate_loss(..., backend="dask")``).

    The samples are cut into chunks of whole blocks; each chunk is a pure
    Dask task (keyed by the model, the input law, the seed and its first
    sample index) that returns its blocks' statistics, and the blocks are
    merged in sample order as on the CPU: the result equals
    ``estimate_loss(..., backend="cpu")``'s bit for bit, with
    ``backend="dask"``.  A chunk lost with a worker is recomputed.

    Parameters
    ----------
    model, inputs, n_samples, seed, path, block_size, start, per_feature
        As in :func:`fastsuper.estimate_loss`.
    client : distributed.Client, optional
        The cluster to run on.  Without one, a :func:`local_client` (one
        single-threaded worker process per CPU) is started for this call
        and closed afterwards, which is slow: pass a client when
        making more than one call.
    chunk_size : int, optional
        Samples per task, a multiple of ``block_size`` (default:
        :func:`default_chunk_size`).  It never changes the result.

    Returns
    -------
    LossEstimate
        ``backend="dask"``; ``elapsed`` includes scheduling (and starting a
        local cluster when ``client`` is None).

    Raises
    ------
    FloatingPointError
        If the loss of any sample overflows (the first bad sample is named).
    ImportError
        If dask.distributed is not installed.

    Examples
    --------
    >>> import numpy as np, fastsuper as fs
    >>> from distributed import Client  # doctest: +SKIP
    >>> client = Client(n_workers=2, threads_per_worker=1)  # doctest: +SKIP
    >>> model = fs.Model(np.random.default_rng(0).normal(size=(4, 20)) / 2, exponent=3)
    >>> inputs = fs.SparseInputs(20, p=0.05)
    >>> est = fs.estimate_loss(model, inputs, 10**6, backend="dask",
    ...                        client=client)  # doctest: +SKIP
    >>> est.mean == fs.estimate_loss(model, inputs, 10**6).mean  # doctest: +SKIP
    True
    """
    require_distributed()
    if client is not None:
        check_client(client)
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if client is None:
            # validate before paying for a cluster
            plan_run(model, inputs, n_samples, seed, path, block_size, start, per_feature,
                  chunk_size, 1)  # fmt: skip
            client = stack.enter_context(local_client())
        n_threads = sum(client.nthreads().values()) or 1
        run = plan_run(
            model, inputs, n_samples, seed, path, block_size, start, per_feature, chunk_size,
            n_threads,
        )  # fmt: skip
        run.submit(client)
        return run.collect(client, t0)
