"""The package's structure: no import cycle, no private name across subpackages, empty
subpackage ``__init__`` files, numba.cuda only in the CUDA modules, short functions.

The import graph is grimp's (the library behind ``lint-imports``), function-level
imports included; the layer contracts themselves are in ``pyproject.toml``
(``[tool.importlinter]``) and run with ``lint-imports``.  Names and functions are
read from the source with :mod:`ast`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import fastsuper

grimp = pytest.importorskip("grimp")

PACKAGE = "fastsuper"
ROOT = Path(fastsuper.__file__).resolve().parent

#: the modules that may import numba.cuda: CUDA support and the CUDA kernels
NUMBA_CUDA_MODULES = {
    "fastsuper.core.cuda",
    "fastsuper.core.cuda_jit",
    "fastsuper.exact.kernels_cuda",
    "fastsuper.mc.kernels_cuda",
    "fastsuper.train.kernels_cuda",
}

#: decorators that compile a function with Numba (CPU or CUDA): such functions are kernels
NUMBA_DECORATORS = {
    "njit",
    "jit",
    "kernel_njit",
    "parallel_njit",
    "cuda_kernel",
    "_kernel",
    "intrinsic",
    "vectorize",
    "guvectorize",
}

MAX_FUNCTION_LINES = 80
MAX_PARAMETERS = 12


def _modules() -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()
TREES = {name: ast.parse(path.read_text(), filename=str(path)) for name, path in MODULES.items()}


def _where(module: str, node: ast.AST) -> str:
    return f"{MODULES[module].relative_to(ROOT.parent)}:{node.lineno}"


def _unit(module: str) -> str:
    """The subpackage (or top-level module) a module belongs to: fastsuper.mc.cpu -> mc."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _absolute(module: str, node: ast.ImportFrom) -> str:
    """The module an ``import from`` names, relative imports resolved."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not _is_package(module):
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph(PACKAGE, cache_dir=None)


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (or a module importing itself)."""
    modules = sorted(graph.modules)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    counter = 0
    for root in modules:  # Tarjan's algorithm, iterative
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            if i < len(edges[node]):
                work.append((node, i + 1))
                nxt = edges[node][i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1 or node in edges[node]:
                    found.append(sorted(comp))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return found


def test_no_import_cycle(graph):
    """No set of modules imports each other in a circle (function-level imports count)."""
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def _private_imports() -> list[str]:
    """``file:line`` of every import of a private name or module from another subpackage."""
    bad = []
    for module, tree in TREES.items():
        aliases: dict[str, str] = {}  # local name -> imported fastsuper module
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if not a.name.startswith(PACKAGE):
                        continue
                    if a.asname:
                        aliases[a.asname] = a.name
                    if _unit(a.name) != _unit(module) and any(map(_private, a.name.split("."))):
                        bad.append(f"{_where(module, node)}: import {a.name}")
            elif isinstance(node, ast.ImportFrom):
                source = _absolute(module, node)
                if not source.startswith(PACKAGE):
                    continue
                for a in node.names:
                    target = f"{source}.{a.name}"
                    is_module = target in MODULES
                    if is_module:
                        aliases[a.asname or a.name] = target
                    unit = _unit(target if is_module else source)
                    if unit == _unit(module):
                        continue
                    if _private(a.name) or any(map(_private, source.split("."))):
                        bad.append(f"{_where(module, node)}: from {source} import {a.name}")
        for node in ast.walk(tree):  # alias._name on a module of another subpackage
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and _private(node.attr)
                and _unit(aliases[node.value.id]) != _unit(module)
            ):
                bad.append(f"{_where(module, node)}: {aliases[node.value.id]}.{node.attr}")
    return sorted(set(bad))


def test_no_private_name_crosses_a_subpackage():
    """A name (or module) with a leading underscore is used only inside its own subpackage."""
    bad = _private_imports()
    assert not bad, "private names imported across subpackages:\n" + "\n".join(bad)


def test_subpackage_init_files_import_nothing(graph):
    """``fastsuper.core``, ``fastsuper.mc``, ...: their ``__init__.py`` hold no import."""
    subpackages = [m for m in MODULES if m != PACKAGE and _is_package(m)]
    assert subpackages
    bad = []
    for module in subpackages:
        nodes = ast.walk(TREES[module])
        bad += [_where(module, n) for n in nodes if isinstance(n, (ast.Import, ast.ImportFrom))]
        bad += [f"{module} -> {m}" for m in sorted(graph.find_modules_directly_imported_by(module))]
    assert not bad, "imports in subpackage __init__ files:\n" + "\n".join(bad)


def _imports_numba_cuda(tree: ast.Module) -> list[ast.AST]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            if any(a.name == "numba.cuda" or a.name.startswith("numba.cuda.") for a in node.names):
                found.append(node)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            source = node.module or ""
            if source == "numba.cuda" or source.startswith("numba.cuda."):
                found.append(node)
            elif source == "numba" and any(a.name == "cuda" for a in node.names):
                found.append(node)
    return found


def test_only_the_cuda_modules_import_numba_cuda():
    """The CPU modules never import numba.cuda, not even inside a function."""
    bad = [
        _where(module, node)
        for module, tree in TREES.items()
        if module not in NUMBA_CUDA_MODULES
        for node in _imports_numba_cuda(tree)
    ]
    assert not bad, "numba.cuda imported outside the CUDA modules:\n" + "\n".join(bad)
    for module in NUMBA_CUDA_MODULES:
        assert module in MODULES, f"{module} is listed but does not exist"


def _decorator_name(node: ast.expr) -> str:
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return ""


def _functions():
    """(module, function node, is a Numba kernel) for every function and method."""
    for module, tree in TREES.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names = {_decorator_name(d) for d in node.decorator_list}
                yield module, node, bool(names & NUMBA_DECORATORS)


def _code_lines(node: ast.FunctionDef) -> int:
    """Lines from ``def`` to the end, the docstring left out."""
    lines = node.end_lineno - node.lineno + 1
    first = node.body[0]
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        lines -= first.end_lineno - first.lineno + 1
    return lines


def _parameters(node: ast.FunctionDef) -> int:
    a = node.args
    n = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs)
    n += (a.vararg is not None) + (a.kwarg is not None)
    if a.args and a.args[0].arg in ("self", "cls"):
        n -= 1
    return n


#: public functions whose documented keyword signature has more than MAX_PARAMETERS
#: parameters; each hands its options on as one record (FitOptions, _Problem, ...)
PUBLIC_SIGNATURES = {
    ("fastsuper.train.adam", "fit"),
    ("fastsuper.train.lbfgs", "fit_exact"),
    ("fastsuper.apps.sweep", "sweep"),
    ("fastsuper.mc.api", "estimate_loss"),
}


def test_functions_are_short():
    """Plain-Python functions: at most 80 lines of code (docstring not counted) and at most
    12 parameters (``self`` not counted); Numba kernels are exempt, and so are the
    parameters of the listed public signatures."""
    bad = []
    for module, node, kernel in _functions():
        if kernel:
            continue
        lines, params = _code_lines(node), _parameters(node)
        if (module, node.name) in PUBLIC_SIGNATURES:
            params = 0
        if lines > MAX_FUNCTION_LINES:
            bad.append(f"{_where(module, node)}: {node.name} has {lines} lines")
        if params > MAX_PARAMETERS:
            bad.append(f"{_where(module, node)}: {node.name} has {params} parameters")
    assert not bad, "functions too long:\n" + "\n".join(bad)
