"""asv benchmarks for fastsuper (``make bench``; ``asv.conf.json`` points here).

One-off studies and the PyTorch comparisons (``make compare``) are scripts in
``scripts/``, not asv benchmarks.
"""
