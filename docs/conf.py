"""Sphinx configuration of the fastsuper documentation (``make docs``)."""

import fastsuper

project = "fastsuper"
author = "the fastsuper developers"
copyright = "2026, the fastsuper developers"
version = release = fastsuper.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "sphinx.ext.mathjax",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
templates_path = []

autosummary_generate = True
numpydoc_show_class_members = False
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

html_theme = "pydata_sphinx_theme"
html_title = f"fastsuper {release}"
html_static_path = []
