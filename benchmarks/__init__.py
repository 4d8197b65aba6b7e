"""asv benchmarks for fastsuper (``make bench``) and the PyTorch comparison
(``make compare``, :mod:`benchmarks.compare_torch`)."""
