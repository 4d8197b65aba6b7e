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
    of the trained model on ``eval_samples`` samples.
a callable ``f(params: dict, seed: int) -> dict``
    Any function of a grid point (a dict of scalars) and a seed returning
    a dict of scalar outputs (the same names for every row).  For
    ``executor="processes"`` it must be importable (defined in a module).

Every parameter is a scalar (int, float, str, bool or None), so that the
table and its CSV file hold it in one cell.
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
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fastsuper.core import validation as v
from fastsuper.core.activations import ACTIVATIONS
from fastsuper.core.laws import _LAW_CODES
from fastsuper.mc.common import METHODS, PATHS

__all__ = ["KINDS", "SweepResult", "sweep"]

#: parameters of the built-in row functions and their defaults (``REQUIRED`` must be given)
REQUIRED = object()
_FRAME = {
    "n": REQUIRED,
    "d": REQUIRED,
    "p": REQUIRED,
    "exponent": 3,
    "activation": "power",
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
        "exponent": 1,
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
    model = Model(W, activation=q["activation"], exponent=q["exponent"])
    return model, SparseInputs(q["n"], p=q["p"], values=law)


def _row_estimate(q: dict, seed: int) -> dict:
    from fastsuper.exact.api import exact_loss_and_gain
    from fastsuper.mc.api import estimate_loss

    model, inputs = _frame_model(q, seed)
    t0 = time.perf_counter()
    est = estimate_loss(model, inputs, q["n_samples"], seed, path=q["path"], method=q["method"],
                        block_size=q["block_size"])  # fmt: skip
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
                  bias=q["bias"], steps=q["steps"], batch_size=q["batch_size"], lr=q["lr"],
                  seed=seed, dtype=np.dtype(q["dtype"]), log_every=q["log_every"])  # fmt: skip
        out = {"final_batch_loss": float(res.final_loss[0])}
        ne = q["eval_samples"]
        if ne:
            est = estimate_loss(res.model(0), res.inputs(0), ne, seed)
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
        p = v.check_real("p", q["p"])
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must lie in [0, 1], got {p}")
        v.check_real("exponent", q["exponent"], positive=True)
        if q["activation"] not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(ACTIVATIONS)}, got {q['activation']!r}"
            )
        if q["values"] not in _LAW_CODES or q["values"] == "discrete":
            allowed = sorted(set(_LAW_CODES) - {"discrete"})
            raise ValueError(f"values must be one of {allowed}, got {q['values']!r}")
        if q["dtype"] not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {q['dtype']!r}")
        if kind in ("estimate", "exact"):
            if q["norm"] is not None:
                v.check_real("norm", q["norm"], positive=True)
            if q["weight_seed"] is not None:
                v.check_int("weight_seed", q["weight_seed"])
        if kind == "estimate":
            v.check_int("n_samples", q["n_samples"], minimum=2)
            v.check_int("block_size", q["block_size"], minimum=1)
            if q["path"] not in PATHS:
                raise ValueError(f"path must be one of {PATHS}, got {q['path']!r}")
            if q["method"] not in METHODS:
                raise ValueError(f"method must be one of {METHODS}, got {q['method']!r}")
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
            if not isinstance(q["bias"], bool):
                raise TypeError(f"bias must be True or False, got {q['bias']!r}")
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


def _check_seeds(seeds) -> list[int]:
    if isinstance(seeds, (numbers.Integral, str, bytes)) or not isinstance(
        seeds, (Sequence, np.ndarray)
    ):
        raise TypeError(
            f"seeds must be a list of integers, got {v.show(seeds)}; e.g. seeds=range(4) or "
            f"seeds=[{v.show(seeds)}]"
        )
    out = [v.check_int(f"seeds[{i}]", s) for i, s in enumerate(seeds)]
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


class _Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, total: int, done: int, enabled: bool, width: int = 30):
        self.total, self.done, self.enabled, self.width = total, done, enabled, width
        self.start_done = done
        self.t0 = time.perf_counter()
        self._draw()

    def update(self) -> None:
        self.done += 1
        self._draw()

    def _draw(self) -> None:
        if not self.enabled:
            return
        frac = self.done / self.total if self.total else 1.0
        bar = "#" * int(frac * self.width)
        el = time.perf_counter() - self.t0
        new = self.done - self.start_done
        eta = f", ~{el / new * (self.total - self.done):.0f} s left" if new else ""
        sys.stderr.write(
            f"\rsweep {self.done}/{self.total} [{bar:<{self.width}}] {100 * frac:3.0f}% "
            f"{el:.1f} s{eta}   "
        )
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _init_process(threads: int) -> None:  # pragma: no cover - runs in the pool's processes
    import numba

    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))


def _execute(executor, func, todo, record, n_jobs, client) -> Iterator[tuple[int, dict]]:
    """Yield ``(index into todo, result)`` as rows finish (any order)."""
    if executor == "local":
        for i, (_, q, s) in enumerate(todo):
            yield i, _run_row(func, q, s, record)
        return
    if executor == "processes":
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        import numba

        jobs = n_jobs or max(1, min(len(todo), os.cpu_count() or 1))
        threads = max(1, numba.config.NUMBA_NUM_THREADS // jobs)
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
    grid: Mapping[str, Sequence] | None = None,
    *,
    seeds: Sequence[int] = (0,),
    fixed: Mapping[str, Any] | None = None,
    output: str | os.PathLike | None = None,
    executor: str | None = None,
    client=None,
    n_jobs: int | None = None,
    progress: bool = True,
    on_error: str = "raise",
    max_points: int | None = None,
    weights_dir: str | os.PathLike | None = None,
    parquet: bool = False,
) -> SweepResult:
    """Run estimates or fits over a parameter grid; resumable, on local cores or Dask.

    One row per (grid point, seed): the grid is the cartesian product of
    ``grid``'s lists (in the order given, the last key varying fastest),
    each point run for every seed.  With ``output``, each finished row is
    appended to that CSV file at once; call :func:`sweep` again with the same
    arguments to resume: rows already in the file are kept and only the
    missing ones run.  The table, and the file once the sweep completes,
    are in grid order whatever the order rows finished in.

    Parameters
    ----------
    kind : {"estimate", "exact", "fit"} or callable
        The row function (see :mod:`fastsuper.sweep`): its parameters and
        defaults are in :data:`KINDS`; a callable ``f(params, seed) -> dict``
        runs anything.
    grid : dict of str to list
        Parameter name -> the values it takes (scalars).
    seeds : sequence of int, default (0,)
        Seeds; every grid point runs once per seed.
    fixed : dict of str to scalar, optional
        Parameters with one value (a column of the table, like the grid's).
    output : str or path-like, optional
        CSV file to append rows to and to resume from.
    executor : {"local", "processes", "dask"}, optional
        ``"local"``: one row after the other in this process (each uses
        Numba's threads); ``"processes"``: a pool of ``n_jobs`` processes
        (started with ``spawn``; Numba threads shared out among them);
        ``"dask"``: one task per row on ``client`` (a local cluster when
        ``client`` is None).  Default ``"dask"`` when ``client`` is given,
        else ``"local"``.
    client : distributed.Client, optional
        Dask client for ``executor="dask"``.
    n_jobs : int, optional
        Processes for ``executor="processes"`` (default: the CPU count).
    progress : bool, default True
        Progress bar on stderr.
    on_error : {"raise", "record"}, default "raise"
        ``"record"`` keeps going when a row fails: its outputs are empty and
        the ``error`` column holds the exception (resuming does not retry
        it; delete the row from the file to retry).
    max_points : int, optional
        Run at most this many new rows, then return (the result is then
        ``complete=False``); for budgets and for tests of resuming.
    weights_dir : str or path-like, optional
        ``kind="fit"`` only: save each trained model there
        (``FitResult.save``; the ``weights`` column holds the path).
    parquet : bool, default False
        Also write the finished table next to ``output`` as ``.parquet``
        (needs pyarrow).

    Returns
    -------
    SweepResult
        ``.rows`` (list of dicts), ``result[column]`` (NumPy arrays),
        ``.to_csv``, ``.to_parquet``, ``.to_pandas``.

    Raises
    ------
    TypeError, ValueError
        For a bad argument or grid value, before any row runs.

    Examples
    --------
    Monte-Carlo estimates beside the exact values, 2 x 2 points, 2 seeds:

    >>> import numpy as np, fastsuper as fs
    >>> res = fs.sweep("estimate", {"p": [0.01, 0.1], "d": [2, 4]}, seeds=[0, 1],
    ...                fixed={"n": 20, "n_samples": 20_000, "exact": True}, progress=False)
    >>> len(res), res.columns[:5]
    (8, ['p', 'd', 'n', 'n_samples', 'exact'])
    >>> z = (res["loss"] - res["loss_exact"]) / res["stderr"]
    >>> bool(np.all(np.abs(z) < 5))
    True

    The same on a Dask cluster, written to a CSV file as rows finish (run
    it again after an interruption to resume):

    >>> from distributed import Client  # doctest: +SKIP
    >>> res = fs.sweep("estimate", {"p": [0.01, 0.1], "d": [2, 4]}, fixed={"n": 20},
    ...                output="sweep.csv", client=Client())  # doctest: +SKIP
    """
    # ---- the row function and its parameters
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
    names, points = _grid_points(grid, fixed)
    seeds = _check_seeds(seeds)
    if isinstance(kind, str):
        spec = KINDS[kind]
        unknown = [k for k in names if k not in spec]
        if unknown:
            raise ValueError(
                f"unknown parameter {unknown[0]!r} for kind={kind!r}; the parameters are "
                f"{sorted(spec)}"
            )
        missing = [k for k, d in spec.items() if d is REQUIRED and k not in names]
        if missing:
            raise ValueError(f"kind={kind!r} needs parameter {missing[0]!r} in grid or fixed")
        full = []
        for q in points:
            qq = {k: q.get(k, d) for k, d in spec.items()}
            _check_builtin_point(kind, qq)
            full.append(qq)
    else:
        full = points
    if executor is None:
        executor = "dask" if client is not None else "local"
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
    if client is not None and executor != "dask":
        raise ValueError(f"client is for executor='dask' only, got executor={executor!r}")
    if client is not None:
        from fastsuper.mc.dask import check_client

        check_client(client)
    if n_jobs is not None:
        n_jobs = v.check_int("n_jobs", n_jobs, minimum=1)
        if executor != "processes":
            raise ValueError(f"n_jobs is for executor='processes' only, got {executor!r}")
    if on_error not in ("raise", "record"):
        raise ValueError(f"on_error must be 'raise' or 'record', got {on_error!r}")
    if max_points is not None:
        max_points = v.check_int("max_points", max_points, minimum=0)
    if not isinstance(progress, (bool, np.bool_)):
        raise TypeError(f"progress must be True or False, got {progress!r}")
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

    # ---- rows already done (kept as the CSV text: the resume keys are that text)
    key_names = [*names, "seed"]
    keys = [(i, s) for i in range(len(points)) for s in seeds]

    def key_of(q: Mapping, s) -> tuple:
        return tuple(_fmt(q.get(k)) for k in names) + (_fmt(s),)

    columns = None if outputs is None else [*key_names, *outputs, _ERROR]
    done: dict[tuple, dict] = {}  # key -> row as CSV text
    if path is not None and path.exists() and path.stat().st_size > 0:
        header, rows, clean = _read_journal(path)
        if header is not None:
            if header[: len(key_names)] != key_names or header[-1] != _ERROR or (
                columns is not None and header != columns
            ):  # fmt: skip
                raise ValueError(
                    f"{str(path)!r} holds another sweep: its columns are {header}, this sweep's "
                    f"are {columns or [*key_names, '...', _ERROR]}; use another output file"
                )
            columns = header
            for r in rows:
                k = tuple(r[c] for c in key_names)
                if k in done:
                    clean = False  # a duplicate: keep the first
                    continue
                done[k] = r
            if not clean:
                _write_atomic(path, columns, list(done.values()))

    missing = [(i, s) for i, s in keys if key_of(points[i], s) not in done]
    todo = missing if max_points is None else missing[:max_points]

    # ---- run
    bar = _Progress(len(keys), len(keys) - len(missing), bool(progress))
    held: list[tuple] = []  # failed rows that arrived before the output names were known
    n_new = 0

    def add(i: int, s: int, outs: dict, error: str) -> None:
        nonlocal columns
        if columns is None:
            if error:
                held.append((i, s, outs, error))
                return
            columns = [*key_names, *outs, _ERROR]
        out_names = columns[len(key_names) : -1]
        if not error and list(outs) != out_names:
            raise ValueError(
                f"the row function returned outputs {list(outs)}, but the sweep's columns are "
                f"{out_names} (every row must return the same names)"
            )
        raw = {k: _fmt(points[i][k]) for k in names}
        raw["seed"] = _fmt(s)
        raw.update({c: _fmt(outs.get(c)) for c in out_names})
        raw[_ERROR] = error
        if path is not None:
            new_file = not path.exists() or path.stat().st_size == 0
            with open(path, "a", newline="") as fh:
                w = csv.writer(fh)
                if new_file:
                    w.writerow(columns)
                w.writerow([raw[c] for c in columns])
                fh.flush()
        done[key_of(points[i], s)] = raw

    with contextlib.ExitStack() as stack:
        if executor == "dask" and client is None and todo:
            from fastsuper.mc.dask import local_client

            client = stack.enter_context(local_client())
        try:
            for j, res in _execute(executor, func, [(i, full[i], s) for i, s in todo],
                                   on_error == "record", n_jobs, client):  # fmt: skip
                i, s = todo[j]
                add(i, s, res["outputs"], res[_ERROR])
                if columns is not None and held:
                    for h in held:
                        add(*h)
                    held.clear()
                n_new += 1
                bar.update()
        finally:
            bar.close()
    if columns is None:  # every new row failed (recorded): no output names are known
        columns = [*key_names, _ERROR]
        for h in held:
            add(*h)

    # ---- the table, in grid order; the file rewritten in that order once complete
    table = [done[key_of(points[i], s)] for i, s in keys if key_of(points[i], s) in done]
    complete = len(table) == len(keys)
    if path is not None and complete:
        grid_keys = {key_of(points[i], s) for i, s in keys}
        extra = [r for k, r in done.items() if k not in grid_keys]  # other sweeps' rows: kept
        _write_atomic(path, columns, table + extra)
    result = SweepResult([_parse_row(r, columns) for r in table], columns, complete, path, n_new)
    if parquet and complete:
        result.to_parquet(path.with_suffix(".parquet"))
    return result
