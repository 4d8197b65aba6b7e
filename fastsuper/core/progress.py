"""Progress bars on stderr (tqdm) for the calls that can run long.

Every long-running public function takes ``progress``: ``None`` (the
default) shows a bar only when stderr is a terminal, so scripts whose
output goes to a file or a pipe, notebooks and test runs stay quiet;
``True`` or ``False`` force it on or off.  A bar reads::

    fit 4000/10000 steps  40%|########            | 00:03<00:04, mean batch loss 0.0431

Examples
--------
>>> from fastsuper.core.progress import progress_bar, progress_enabled
>>> progress_enabled(False)
False
>>> with progress_bar(3, "demo", unit="items", enabled=False) as bar:
...     for _ in range(3):
...         bar.update()
"""

from __future__ import annotations

import sys
import time

from fastsuper.core import validation as v

__all__ = ["BAR_FORMAT", "Throttle", "progress_bar", "progress_enabled"]

#: the layout of every bar: what, how far (in its unit), the bar, the times and the postfix
BAR_FORMAT = (
    "{desc} {n_fmt}/{total_fmt} {unit} {percentage:3.0f}%|{bar:20}| {elapsed}<{remaining}{postfix}"
)


def progress_enabled(progress, *, func: str | None = None) -> bool:
    """Whether to show a bar: ``progress`` itself, or for ``None`` whether stderr is a terminal.

    Raises
    ------
    TypeError
        If ``progress`` is not ``None``, ``True`` or ``False``.
    """
    if progress is None:
        try:
            return bool(sys.stderr.isatty())
        except (AttributeError, ValueError):  # no stderr, or a closed one
            return False
    return v.check_bool("progress", progress, func=func)


def progress_bar(total, desc: str, *, unit: str = "it", enabled: bool = True, scale: bool = False):
    """A tqdm bar on stderr; when not ``enabled`` a stand-in whose methods do nothing.

    ``scale``: counts in k, M, G (for samples).  Use it as a context manager
    (it closes itself) or call ``close()``.
    """
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=scale, file=sys.stderr,
                bar_format=BAR_FORMAT, dynamic_ncols=True, leave=True)  # fmt: skip


class _NoBar:
    """The stand-in of a disabled bar (tqdm is not even imported)."""

    n = 0

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass

    def write(self, s: str, file=None) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Throttle:
    """True at most once per ``interval`` seconds (for postfixes updated in tight loops)."""

    def __init__(self, interval: float = 0.2):
        self.interval = interval
        self.last = -float("inf")

    def __call__(self) -> bool:
        now = time.perf_counter()
        if now - self.last >= self.interval:
            self.last = now
            return True
        return False
