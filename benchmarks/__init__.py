"""asv benchmarks for fastsuper (``make bench``; ``asv.conf.json`` points here).

One-off studies and the PyTorch comparisons (``make compare``) are scripts in
``scripts/``, not asv benchmarks.
"""

import os
import sys

# scripts/compare_versions.sh benchmarks another checkout of the package (asv
# does not pass PYTHONPATH through to the benchmark processes)
_checkout = os.environ.get("FASTSUPER_BENCH_CHECKOUT")
if _checkout:
    sys.path.insert(0, _checkout)
