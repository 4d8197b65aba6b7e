"""Parameter sweeps: many estimates or fits over a grid, resumable, on local cores or Dask.

:func:`sweep` runs one *row function* per (grid point, seed) and returns a
tidy table (:class:`SweepResult`: one row per grid point and seed, the
parameters, the seed and the outputs as columns).  With ``output=`` every
finished row is appended to a CSV file at once (and flushed), so a sweep
that is interrupted -- Ctrl-C, a crash, a lost job -- is resumed by calling
:func:`sweep` again with the same arguments: the rows already in the file
are read back and only the missing (point, seed) pairs run.

Row functions
-------------
``"estimate"``
    :func:`fastsuper.estimate_loss` of a random frame (THEORY §5.3):
    ``W = random_frame(n, d, norm, weight_seed, dtype)`` (``norm`` defaults
    to the best common norm of a random frame for integer exponents, else
    1; ``weight_seed`` to the row's seed), ``x`` from ``SparseInputs(n,
    p, values)``; the row's seed is the sampler's seed.
``"exact"``
    :func:`fastsuper.exact_loss_and_gain` of the same random frame
    (``activation="power"`` only).
``"fit"``
    :func:`fastsuper.fit` (Adam, one instance; the row's seed seeds the
    initial weights and the samples), then :func:`fastsuper.estimate_loss`
    of the trained model on ``eval_samples`` samples (``final_batch_loss``
    is the fit's last batch loss, :attr:`fastsuper.FitResult.final_loss`).
a callable ``f(params: dict, seed: int) -> dict``
    Any function of a grid point (a dict of scalars) and a seed returning
    a dict of scalar outputs (the same names for every row).  For
    ``executor="processes"`` it must be importable (defined in a module).

Every parameter is a scalar (int, float, str, bool or None), so that the
table and its CSV file hold it in one cell.  Every loss and gain column is a
sum over features, ``E sum_j I_j (x_j - x_hat_j)^2`` (the paper's convention,
that of :func:`fastsuper.estimate_loss`); divide by ``n`` for Elhage et al.'s
mean over features.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import itertools
import math
import numbers
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fastsuper.core import arguments
from fastsuper.core import validation as v
from fastsuper.core.activations import DEFAULT_EXPONENTS
from fastsuper.core.model import check_activation, check_param
from fastsuper.core.progress import progress_bar, progress_enabled
from fastsuper.mc.common import METHODS, PATHS

__all__ = ["KINDS", "SweepResult", "sweep"]


class _Required:
    """The default of a parameter that must be given (shown as ``REQUIRED``)."""

    def __repr__(self) -> str:
        return "REQUIRED"


#: parameters of the built-in row functions and their defaults (``REQUIRED`` must be given;
#: ``exponent=None`` is the activation's default, as in :class:`fastsuper.Model`; so is
#: ``param=None``, which leaves the point's key as it is without the parameter)
REQUIRED = _Required()
_FRAME = {
    "n": REQUIRED,
    "d": REQUIRED,
    "p": REQUIRED,
    "exponent": None,
    "activation": "power",
    "param": None,
    "values": "gaussian",
    "norm": None,
    "weight_seed": None,
    "dtype": "float64",
}
KINDS: dict[str, dict[str, Any]] = {
    "estimate": {
        **_FRAME,
        "n_samples": 100_000,
        "path": "auto",
        "method": "naive",
        "block_size": 2048,
        "exact": False,
    },
    "exact": dict(_FRAME),
    "fit": {
        "n": REQUIRED,
        "d": REQUIRED,
        "p": REQUIRED,
        "activation": "relu_power",
        "exponent": None,
        "param": None,
        "values": "uniform",
        "bias": True,
        "importance_decay": 1.0,
        "steps": 1000,
        "batch_size": 1024,
        "lr": 1e-3,
        "dtype": "float64",
        "log_every": 100,
        "eval_samples": 100_000,
    },
}
#: output columns of the built-in row functions
OUTPUTS = {
    "estimate": [
        "loss",
        "stderr",
        "gain",
        "gain_stderr",
        "loss_exact",
        "gain_exact",
        "path",
        "elapsed",
    ],  # fmt: skip
    "exact": ["loss", "gain", "elapsed"],
    "fit": ["final_batch_loss", "loss", "stderr", "gain", "gain_stderr", "weights", "elapsed"],
}
#: parameters of the built-in row functions that are integers: a float such as 1e5
#: (from a CSV cell or the command line) becomes the int 100000 in the table
INT_PARAMS = frozenset(
    {"n", "d", "n_samples", "block_size", "weight_seed", "steps", "batch_size", "log_every",
     "eval_samples"}
)  # fmt: skip
EXECUTORS = ("local", "processes", "dask")
_ERROR = "error"
_SCALARS = (bool, numbers.Integral, numbers.Real, str, type(None))


# --------------------------------------------------------------------------
# cells: one text form for the CSV file, the resume keys and the table


def _fmt(value) -> str:
    """The CSV text of a scalar (floats round-trip exactly: ``repr``)."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return repr(float(value))
    return str(value)


_INT = re.compile(r"^[+-]?\d+$")


def _parse(text: str):
    """The scalar a CSV cell holds (inverse of :func:`_fmt`)."""
    if text == "":
        return None
    if text in ("True", "False"):
        return text == "True"
    if _INT.match(text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def _column(values: list) -> np.ndarray:
    """A NumPy column: bool, int64, float64 (None -> NaN), str, or object."""
    kinds = {type(x) for x in values}
    if kinds <= {bool}:
        return np.array(values, dtype=bool)
    if kinds <= {int}:
        return np.array(values, dtype=np.int64)
    if kinds <= {int, float, type(None)} and kinds & {float, int}:
        return np.array([math.nan if x is None else x for x in values], dtype=np.float64)
    if kinds <= {str}:
        return np.array(values, dtype=str)
    return np.array(values, dtype=object)


# --------------------------------------------------------------------------
# the result


@dataclass
class SweepResult:
    """The table of a :func:`sweep`: one row per grid point and seed, in grid order.

    Attributes
    ----------
    rows : list of dict
        Each row: the parameters, ``seed``, the outputs and ``error`` (empty
        unless the row function failed with ``on_error="record"``).
    columns : list of str
        Column names, in order.
    complete : bool
        True when every (point, seed) of the grid has a row.
    path : pathlib.Path or None
        The CSV file the rows were written to.
    """

    rows: list[dict]
    columns: list[str]
    complete: bool = True
    path: Path | None = None
    n_new: int = field(default=0, repr=False)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, name: str) -> np.ndarray:
        """A column as a NumPy array (floats with NaN for missing values)."""
        if name not in self.columns:
            raise KeyError(f"no column {name!r}; the columns are {self.columns}")
        return _column([r.get(name) for r in self.rows])

    def to_dict(self) -> dict[str, np.ndarray]:
        """Every column as a NumPy array."""
        return {c: self[c] for c in self.columns}

    def to_csv(self, path) -> Path:
        """Write the table to a CSV file (the format :func:`sweep` resumes from)."""
        path = Path(path)
        _write_atomic(path, self.columns, self.rows, _fmt)
        return path

    def to_pandas(self):
        """The table as a :class:`pandas.DataFrame` (needs pandas)."""
        try:
            import pandas as pd
        except ImportError as exc:
            raise ImportError("SweepResult.to_pandas needs pandas: pip install pandas") from exc
        return pd.DataFrame({c: self[c] for c in self.columns}, columns=self.columns)

    def to_parquet(self, path) -> Path:
        """Write the table to a Parquet file (needs pyarrow)."""
        pa, pq = _require_pyarrow()
        cols = {}
        for c in self.columns:
            col = self[c]
            cols[c] = pa.array(col.tolist() if col.dtype == object else col)
        path = Path(path)
        pq.write_table(pa.table(cols), path)
        return path

    def __repr__(self) -> str:
        state = "complete" if self.complete else "incomplete"
        return f"SweepResult({len(self.rows)} rows, {state}, columns={self.columns})"


def _require_pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ImportError("Parquet output needs pyarrow: pip install pyarrow") from exc
    return pa, pq


# --------------------------------------------------------------------------
# the CSV journal


def _write_atomic(path: Path, columns: list[str], rows: list[dict], cell=str) -> None:
    """Write a whole CSV file at once (a temporary file, then a rename)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(columns)
        for r in rows:
            w.writerow([cell(r.get(c)) for c in columns])
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _read_journal(path: Path) -> tuple[list[str] | None, list[dict], bool]:
    """(header, rows as text, clean) of a CSV journal; a torn last line is dropped."""
    text = path.read_text()
    clean = True
    if text and not text.endswith("\n"):  # a write cut short: drop the partial line
        text = text[: text.rfind("\n") + 1]
        clean = False
    records = list(csv.reader(io.StringIO(text)))
    if not records:
        return None, [], False
    header, rows = records[0], []
    for rec in records[1:]:
        if len(rec) != len(header):
            clean = False
            continue
        rows.append(dict(zip(header, rec)))
    return header, rows, clean


def _parse_row(raw: dict, columns: list[str]) -> dict:
    return {c: (raw[c] if c == _ERROR else _parse(raw[c])) for c in columns}


# --------------------------------------------------------------------------
# built-in row functions


def _frame_model(q: dict, seed: int):
    from fastsuper.analysis import random_frame, random_frame_norm
    from fastsuper.core.laws import SparseInputs, ValueLaw
    from fastsuper.core.model import Model

    law = ValueLaw(q["values"])
    norm = q["norm"]
    if norm is None:
        e = float(q["exponent"])
        norm = random_frame_norm(q["n"], q["d"], int(e), law) if e.is_integer() else 1.0
    ws = seed if q["weight_seed"] is None else q["weight_seed"]
    W = random_frame(q["n"], q["d"], norm, ws, np.dtype(q["dtype"]))
    model = Model(W, activation=q["activation"], exponent=q["exponent"], param=q.get("param"))
    return model, SparseInputs(q["n"], p=q["p"], values=law)


def _row_estimate(q: dict, seed: int) -> dict:
    from fastsuper.exact.api import exact_loss_and_gain
    from fastsuper.mc.api import estimate_loss

    model, inputs = _frame_model(q, seed)
    t0 = time.perf_counter()
    est = estimate_loss(model, inputs, q["n_samples"], seed, path=q["path"], method=q["method"],
                        block_size=q["block_size"], progress=False)  # fmt: skip
    le = ge = math.nan
    if q["exact"]:
        le, ge = exact_loss_and_gain(model, inputs)
    return {"loss": est.mean, "stderr": est.stderr, "gain": est.gain_mean,
            "gain_stderr": est.gain_stderr, "loss_exact": le, "gain_exact": ge,
            "path": est.path, "elapsed": time.perf_counter() - t0}  # fmt: skip


def _row_exact(q: dict, seed: int) -> dict:
    from fastsuper.exact.api import exact_loss_and_gain

    model, inputs = _frame_model(q, seed)
    t0 = time.perf_counter()
    loss, gain = exact_loss_and_gain(model, inputs)
    return {"loss": loss, "gain": gain, "elapsed": time.perf_counter() - t0}


class _FitRow:
    """The ``"fit"`` row function (a class so that ``weights_dir`` travels with it)."""

    def __init__(self, weights_dir: str | None):
        self.weights_dir = weights_dir

    def __call__(self, q: dict, seed: int) -> dict:
        from fastsuper.mc.api import estimate_loss
        from fastsuper.train.adam import fit

        t0 = time.perf_counter()
        res = fit(q["n"], q["d"], n_instances=1, p=q["p"],
                  importance=q["importance_decay"] ** np.arange(q["n"]),
                  activation=q["activation"], exponent=q["exponent"], values=q["values"],
                  param=q.get("param"), bias=q["bias"], steps=q["steps"],
                  batch_size=q["batch_size"], lr=q["lr"],
                  seed=seed, dtype=np.dtype(q["dtype"]), log_every=q["log_every"],
                  progress=False)  # fmt: skip
        out = {"final_batch_loss": float(res.final_loss[0])}
        ne = q["eval_samples"]
        if ne:
            est = estimate_loss(res.model(0), res.inputs(0), ne, seed, progress=False)
            out.update(loss=est.mean, stderr=est.stderr, gain=est.gain_mean,
                       gain_stderr=est.gain_stderr)  # fmt: skip
        else:
            out.update(loss=math.nan, stderr=math.nan, gain=math.nan, gain_stderr=math.nan)
        out["weights"] = None
        if self.weights_dir is not None:
            name = hashlib.sha1(_key_text(q, seed).encode()).hexdigest()[:16]
            path = Path(self.weights_dir) / f"fit-{name}.npz"
            path.parent.mkdir(parents=True, exist_ok=True)
            res.save(path)
            out["weights"] = str(path)
        out["elapsed"] = time.perf_counter() - t0
        return out


def _key_text(q: Mapping, seed: int) -> str:
    return "|".join(f"{k}={_fmt(q[k])}" for k in sorted(q)) + f"|seed={_fmt(seed)}"


# --------------------------------------------------------------------------
# argument checks


def _check_scalar(name: str, value):
    if isinstance(value, np.generic):
        value = value.item()
    if not isinstance(value, _SCALARS) or isinstance(value, complex):
        raise TypeError(
            f"{name} must be a scalar (int, float, str, bool or None), got {v.show(value)}"
        )
    if isinstance(value, str) and ("\n" in value or "\r" in value):
        raise ValueError(f"{name} must not contain a line break, got {value!r}")
    return value


def _check_builtin_point(kind: str, q: dict) -> None:
    """Validate one grid point of a built-in kind (cheaply, before anything runs)."""
    where = f"grid point {_key_text(q, 0).rsplit('|seed', 1)[0]}"
    try:
        v.check_int("n", q["n"], minimum=1)
        v.check_int("d", q["d"], minimum=1)
        v.check_probabilities("p", q["p"])
        check_activation(q["activation"], q["exponent"])
        check_param(q["activation"], q.get("param"))
        arguments.check_law("values", q["values"])
        v.check_choice("dtype", q["dtype"], ("float32", "float64"))
        if kind in ("estimate", "exact"):
            if q["norm"] is not None:
                v.check_real("norm", q["norm"], positive=True)
            if q["weight_seed"] is not None:
                v.check_seed("weight_seed", q["weight_seed"], minimum=0)
        if kind == "estimate":
            v.check_int("n_samples", q["n_samples"], minimum=2)
            v.check_int("block_size", q["block_size"], minimum=1)
            v.check_choice("path", q["path"], PATHS)
            v.check_choice("method", q["method"], METHODS)
        if kind == "exact" or (kind == "estimate" and q["exact"]):
            e = float(q["exponent"])
            if q["activation"] != "power" or not e.is_integer():
                raise ValueError(
                    f"the exact loss needs activation='power' with an integer exponent, got "
                    f"{q['activation']!r} with exponent {q['exponent']!r}"
                )
        if kind == "fit":
            for name in ("steps", "batch_size", "log_every"):
                v.check_int(name, q[name], minimum=1)
            v.check_int("eval_samples", q["eval_samples"], minimum=0)
            if q["eval_samples"] == 1:
                raise ValueError("eval_samples must be 0 (no evaluation) or >= 2, got 1")
            v.check_real("lr", q["lr"], positive=True)
            v.check_real("importance_decay", q["importance_decay"], positive=True)
            v.check_bool("bias", q["bias"])
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{where}: {exc}") from None


def _grid_points(grid, fixed) -> tuple[list[str], list[dict]]:
    if grid is None:
        grid = {}
    if not isinstance(grid, Mapping):
        raise TypeError(f"grid must be a dict of parameter name -> list of values, got "
                        f"{type(grid).__name__}")  # fmt: skip
    fixed = {} if fixed is None else fixed
    if not isinstance(fixed, Mapping):
        raise TypeError(f"fixed must be a dict of parameter name -> value, got "
                        f"{type(fixed).__name__}")  # fmt: skip
    names, lists = [], []
    for name, values in grid.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"grid keys must be parameter names (str), got {name!r}")
        if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
            raise TypeError(
                f"grid[{name!r}] must be a list of values, got {v.show(values)}; write "
                f"[{v.show(values)}] for one value (or put it in fixed=)"
            )
        values = [_check_scalar(f"grid[{name!r}][{i}]", x) for i, x in enumerate(values)]
        if not values:
            raise ValueError(f"grid[{name!r}] must hold at least one value, got []")
        if len({_fmt(x) for x in values}) != len(values):
            raise ValueError(f"grid[{name!r}] holds a value twice: {values}")
        names.append(name)
        lists.append(values)
    for name, value in fixed.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"fixed keys must be parameter names (str), got {name!r}")
        if name in grid:
            raise ValueError(f"{name!r} is both in grid and in fixed; give it once")
        _check_scalar(f"fixed[{name!r}]", value)
    for name in [*names, *fixed]:
        if name in ("seed", _ERROR):
            raise ValueError(f"{name!r} is a reserved column name, not a parameter (seeds go in "
                             "seeds=)")  # fmt: skip
    points = [
        {**dict(zip(names, combo)), **{k: _check_scalar(k, x) for k, x in fixed.items()}}
        for combo in itertools.product(*lists)
    ]
    return [*names, *fixed], points


def _integers(q: dict) -> dict:
    """The point ``q`` with the integral floats of :data:`INT_PARAMS` made ints."""
    return {
        k: int(x) if k in INT_PARAMS and isinstance(x, float) and x.is_integer() else x
        for k, x in q.items()
    }


def _check_seeds(seeds) -> list[int]:
    if isinstance(seeds, (numbers.Integral, str, bytes)) or not isinstance(
        seeds, (Sequence, np.ndarray)
    ):
        raise TypeError(
            f"seeds must be a list of integers, got {v.show(seeds)}; e.g. seeds=range(4) or "
            f"seeds=[{v.show(seeds)}]"
        )
    out = [v.check_seed(f"seeds[{i}]", s) for i, s in enumerate(seeds)]
    if not out:
        raise ValueError("seeds must hold at least one seed, got []")
    if len(set(out)) != len(out):
        raise ValueError(f"seeds holds a seed twice: {out}")
    return out


# --------------------------------------------------------------------------
# running rows


def _run_row(func: Callable, q: dict, seed: int, record: bool) -> dict:
    """Call the row function; with ``record``, an exception becomes the row's ``error``."""
    try:
        out = func(dict(q), seed)
        if not isinstance(out, Mapping):
            raise TypeError(f"the row function must return a dict, got {type(out).__name__}")
        clean = {}
        for k, x in out.items():
            if not isinstance(k, str):
                raise TypeError(f"output names must be str, got {k!r}")
            clean[k] = _check_scalar(f"output {k!r}", x)
        return {"outputs": clean, _ERROR: ""}
    except Exception as exc:
        if not record:
            raise
        return {"outputs": {}, _ERROR: f"{type(exc).__name__}: {exc}"}


def _init_process(threads: int) -> None:  # pragma: no cover - runs in the pool's processes
    from fastsuper.core.blas import set_worker_threads

    set_worker_threads(threads)  # Numba and BLAS threads: the jobs' threads add up to the CPUs


def _execute(executor, func, todo, record, n_jobs, client) -> Iterator[tuple[int, dict]]:
    """Yield ``(index into todo, result)`` as rows finish (any order)."""
    if executor == "local":
        for i, (_, q, s) in enumerate(todo):
            yield i, _run_row(func, q, s, record)
        return
    if executor == "processes":
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        from fastsuper.core.blas import threads_per_worker, usable_cpus

        jobs = n_jobs or max(1, min(len(todo), usable_cpus()))
        threads = threads_per_worker(jobs)
        pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_process, initargs=(threads,))  # fmt: skip
        try:
            futs = {
                pool.submit(_run_row, func, q, s, record): i for i, (_, q, s) in enumerate(todo)
            }
            for f in as_completed(futs):
                yield futs[f], f.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return
    # dask
    from fastsuper.mc.dask import require_distributed

    distributed = require_distributed()
    from dask.base import tokenize

    fname = getattr(func, "__qualname__", type(func).__qualname__)
    futs = {}
    for i, (_, q, s) in enumerate(todo):
        key = f"fastsuper-sweep-{fname}-{tokenize(func, sorted(q.items()), s, record)}"
        futs[client.submit(_run_row, func, q, s, record, key=key, pure=True)] = i
    try:
        for f, res in distributed.as_completed(list(futs), with_results=True):
            yield futs[f], res
    except BaseException:
        client.cancel(list(futs))
        raise


# --------------------------------------------------------------------------
# sweep


def sweep(
    kind: str | Callable[[dict, int], Mapping] = "estimate",
    grid: Mapping[str, Sequence] | None = None, *, seeds: Sequence[int] = (0,),
    fixed: Mapping[str, Any] | None = None, output: str | os.PathLike | None = None,
    executor: str | None = None, client=None, n_jobs: int | None = None, progress=None,
    on_error: str = "raise", max_points: int | None = None,
    weights_dir: str | os.PathLike | None = None, parquet: bool = False,
) -> SweepResult:  # fmt: skip
    """Run estimates or fits over a parameter grid; resumable, on local cores or Dask.

    One row per (grid point, seed) of the cartesian product of ``grid``'s
    lists (the last key varying fastest).  With ``output``, each finished row
    is appended to that CSV file at once: call :func:`sweep` again with the
    same arguments to resume (only the missing rows run).

    Parameters
    ----------
    kind : {"estimate", "exact", "fit"} or callable
        The row function (see :mod:`fastsuper.apps.sweep`; parameters and
        defaults in :data:`KINDS`), or any ``f(params, seed) -> dict``.
    grid : dict of str to list
        Parameter name -> the values it takes (scalars).
    seeds : sequence of int, default (0,)
        Seeds; every grid point runs once per seed.
    fixed : dict of str to scalar, optional
        Parameters with one value (a column of the table, like the grid's).
    output : str or path-like, optional
        CSV file to append rows to and to resume from (in grid order once complete);
        with ``client=distributed.Client()`` too, a resumable sweep on Dask.
    executor : {"local", "processes", "dask"}, optional
        Rows one after the other here (on Numba's threads), in ``n_jobs``
        processes (``spawn``), or as Dask tasks on ``client`` (a local cluster
        when None; the default executor when ``client`` is given).
    client, n_jobs : distributed.Client, int, optional
        Dask client for ``executor="dask"``; processes for ``"processes"`` (CPU count).
    progress : bool, optional
        Progress bar on stderr, one step per row (default: shown when stderr is
        a terminal); the rows' own calls show none.
    on_error : {"raise", "record"}, default "raise"
        ``"record"``: a failed row keeps empty outputs and the exception in its
        ``error`` column (not retried on resuming; delete the row to retry).
    max_points : int, optional
        Run at most this many new rows, then return (``complete=False``).
    weights_dir : str or path-like, optional
        ``kind="fit"``: save each trained model there (column ``weights``).
    parquet : bool, default False
        Also write the finished table beside ``output`` as ``.parquet`` (pyarrow).

    Returns
    -------
    SweepResult
        ``.rows`` (dicts), ``result[column]`` (arrays), ``.to_csv``, ``.to_pandas``.

    Raises
    ------
    TypeError, ValueError
        For a bad argument or grid value, before any row runs.

    Examples
    --------
    Estimates beside the exact values, 2 x 2 points, 2 seeds:

    >>> import numpy as np, fastsuper as fs
    >>> res = fs.sweep("estimate", {"p": [0.01, 0.1], "d": [2, 4]}, seeds=[0, 1],
    ...                fixed={"n": 20, "n_samples": 20_000, "exact": True}, progress=False)
    >>> len(res), res.columns[:5]
    (8, ['p', 'd', 'n', 'n_samples', 'exact'])
    >>> bool(np.all(np.abs((res["loss"] - res["loss_exact"]) / res["stderr"]) < 5))
    True
    """
    func, outputs = _row_function(kind, weights_dir)
    names, points = _grid_points(grid, fixed)
    if isinstance(kind, str):
        points = [_integers(q) for q in points]
    seeds = _check_seeds(seeds)
    full = _full_points(kind, names, points)
    run = _check_execution(
        executor, client, n_jobs, on_error, max_points, progress, output, parquet
    )
    journal = _Journal(run.path, names, outputs, points)
    keys = [(i, s) for i in range(len(points)) for s in seeds]
    n_new = _run_rows(func, full, keys, journal, run)
    return journal.result(keys, n_new, parquet)


def _row_function(kind, weights_dir) -> tuple[Callable, list[str] | None]:
    """The row function of ``kind`` and its output names (``None``: known from the first row)."""
    if isinstance(kind, str):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)} or a callable, got {kind!r}")
        func = {"estimate": _row_estimate, "exact": _row_exact}.get(kind)
        if kind == "fit":
            func = _FitRow(None if weights_dir is None else os.fspath(weights_dir))
        outputs = OUTPUTS[kind]
    elif callable(kind):
        func, outputs = kind, None
    else:
        raise TypeError(f"kind must be one of {sorted(KINDS)} or a callable, got {kind!r}")
    if weights_dir is not None and kind != "fit":
        raise ValueError(f"weights_dir is for kind='fit' only, got kind={kind!r}")
    return func, outputs


def _full_points(kind, names: list[str], points: list[dict]) -> list[dict]:
    """Every parameter of every point of a built-in kind (defaults filled in), checked."""
    if not isinstance(kind, str):
        return points
    spec = KINDS[kind]
    unknown = [k for k in names if k not in spec]
    if unknown:
        raise ValueError(
            f"unknown parameter {unknown[0]!r} for kind={kind!r}; the parameters are {sorted(spec)}"
        )
    missing = [k for k, d in spec.items() if d is REQUIRED and k not in names]
    if missing:
        raise ValueError(f"kind={kind!r} needs parameter {missing[0]!r} in grid or fixed")
    full = []
    for q in points:
        qq = {k: q.get(k, d) for k, d in spec.items()}
        if qq["exponent"] is None and qq["activation"] in DEFAULT_EXPONENTS:
            qq["exponent"] = DEFAULT_EXPONENTS[qq["activation"]]  # the activation's default
        if "param" in qq and qq["param"] is None:
            del qq["param"]  # the activation's default; the key stays that of older runs
        _check_builtin_point(kind, qq)
        full.append(qq)
    return full


@dataclass(frozen=True)
class _Execution:
    """How the rows of a sweep run and where they go (checked arguments of :func:`sweep`)."""

    executor: str
    client: Any
    n_jobs: int | None
    record: bool
    max_points: int | None
    progress: bool
    path: Path | None


def _check_execution(executor, client, n_jobs, on_error, max_points, progress, output, parquet):
    if executor is None:
        executor = "dask" if client is not None else "local"
    v.check_choice("executor", executor, EXECUTORS)
    if client is not None and executor != "dask":
        raise ValueError(f"client is for executor='dask' only, got executor={executor!r}")
    if client is not None:
        from fastsuper.mc.dask import check_client

        check_client(client)
    if n_jobs is not None:
        n_jobs = v.check_int("n_jobs", n_jobs, minimum=1)
        if executor != "processes":
            raise ValueError(f"n_jobs is for executor='processes' only, got {executor!r}")
    v.check_choice("on_error", on_error, ("raise", "record"))
    if max_points is not None:
        max_points = v.check_int("max_points", max_points, minimum=0)
    progress = progress_enabled(progress)
    path = None
    if output is not None:
        path = Path(output)
        if path.suffix.lower() != ".csv":
            raise ValueError(f"output must be a .csv file (the journal), got {str(path)!r}")
    if parquet:
        if path is None:
            raise ValueError("parquet=True needs output= (the .parquet file goes beside it)")
        _require_pyarrow()
    if executor == "dask" and client is None:
        from fastsuper.mc.dask import require_distributed

        require_distributed()
    record = on_error == "record"
    return _Execution(executor, client, n_jobs, record, max_points, progress, path)


class _Journal:
    """The rows of a sweep by key, kept as their CSV text, and the CSV file they go to.

    The rows already in the file are read back (a torn last line or a
    duplicate is dropped and the file rewritten), so that resuming runs only
    the missing (point, seed) pairs; the resume keys are that text.
    """

    def __init__(self, path: Path | None, names: list[str], outputs, points: list[dict]):
        self.path, self.names, self.points = path, names, points
        self.key_names = [*names, "seed"]
        self.columns = None if outputs is None else [*self.key_names, *outputs, _ERROR]
        self.done: dict[tuple, dict] = {}  # key -> row as CSV text
        self.held: list[tuple] = []  # failed rows that arrived before the output names
        if path is not None and path.exists() and path.stat().st_size > 0:
            self._read(path)

    def key(self, i: int, s) -> tuple:
        q = self.points[i]
        return tuple(_fmt(q.get(k)) for k in self.names) + (_fmt(s),)

    def _read(self, path: Path) -> None:
        header, rows, clean = _read_journal(path)
        if header is None:
            return
        kn, columns = self.key_names, self.columns
        if header[: len(kn)] != kn or header[-1] != _ERROR or (
            columns is not None and header != columns
        ):  # fmt: skip
            raise ValueError(
                f"{str(path)!r} holds another sweep: its columns are {header}, this sweep's "
                f"are {columns or [*kn, '...', _ERROR]}; use another output file"
            )
        self.columns = header
        for r in rows:
            k = tuple(r[c] for c in kn)
            if k in self.done:
                clean = False  # a duplicate: keep the first
                continue
            self.done[k] = r
        if not clean:
            _write_atomic(path, self.columns, list(self.done.values()))

    def add(self, i: int, s, outs: dict, error: str) -> None:
        """Record a finished row (and the failed ones held until the output names were known)."""
        if self.columns is None:
            if error:
                self.held.append((i, s, outs, error))
                return
            self.columns = [*self.key_names, *outs, _ERROR]
        self._write(i, s, outs, error)
        held, self.held = self.held, []
        for h in held:
            self._write(*h)

    def _write(self, i: int, s, outs: dict, error: str) -> None:
        out_names = self.columns[len(self.key_names) : -1]
        if not error and list(outs) != out_names:
            raise ValueError(
                f"the row function returned outputs {list(outs)}, but the sweep's columns are "
                f"{out_names} (every row must return the same names)"
            )
        raw = {k: _fmt(self.points[i][k]) for k in self.names}
        raw["seed"] = _fmt(s)
        raw.update({c: _fmt(outs.get(c)) for c in out_names})
        raw[_ERROR] = error
        if self.path is not None:
            new_file = not self.path.exists() or self.path.stat().st_size == 0
            with open(self.path, "a", newline="") as fh:
                w = csv.writer(fh)
                if new_file:
                    w.writerow(self.columns)
                w.writerow([raw[c] for c in self.columns])
                fh.flush()
        self.done[self.key(i, s)] = raw

    def result(self, keys: list[tuple], n_new: int, parquet: bool) -> SweepResult:
        """The table in grid order; the file rewritten in that order once complete."""
        if self.columns is None:  # every new row failed (recorded): no output names are known
            self.columns = [*self.key_names, _ERROR]
            held, self.held = self.held, []
            for h in held:
                self._write(*h)
        table = [self.done[k] for k in (self.key(i, s) for i, s in keys) if k in self.done]
        complete = len(table) == len(keys)
        if self.path is not None and complete:
            grid_keys = {self.key(i, s) for i, s in keys}
            extra = [r for k, r in self.done.items() if k not in grid_keys]  # other sweeps' rows
            _write_atomic(self.path, self.columns, table + extra)
        rows = [_parse_row(r, self.columns) for r in table]
        result = SweepResult(rows, self.columns, complete, self.path, n_new)
        if parquet and complete:
            result.to_parquet(self.path.with_suffix(".parquet"))
        return result


def _run_rows(func, full, keys, journal: _Journal, run: _Execution) -> int:
    """Run the rows of ``keys`` (``(point index, seed)``) missing from ``journal`` into it.

    At most ``run.max_points`` of them; returns how many ran.
    """
    missing = [(i, s) for i, s in keys if journal.key(i, s) not in journal.done]
    todo = missing if run.max_points is None else missing[: run.max_points]
    bar = progress_bar(len(keys), "sweep", unit="rows", enabled=run.progress)
    bar.update(len(keys) - len(missing))
    n_new = 0
    with contextlib.ExitStack() as stack:
        client = run.client
        if run.executor == "dask" and client is None and todo:
            from fastsuper.mc.dask import local_client

            client = stack.enter_context(local_client())
        rows = [(i, full[i], s) for i, s in todo]
        try:
            for j, res in _execute(run.executor, func, rows, run.record, run.n_jobs, client):
                i, s = todo[j]
                journal.add(i, s, res["outputs"], res[_ERROR])
                n_new += 1
                bar.update()
        finally:
            bar.close()
    return n_new
