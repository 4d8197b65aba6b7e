"""The tutorials' Python blocks run as written (docs/tutorials/*.md); the docs name real files.

Every fenced block whose info string is exactly ``python`` is executed, in
order, in one namespace per tutorial (the blocks' own ``assert`` statements
check their numbers against the closed forms or the theory); ``sh`` and
other blocks are shown, not run.  Every repository path the README,
CONTRIBUTING and the docs name in backticks exists, but for what ``make docs``
builds (CHANGELOG is history and may name files that have since moved).
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = sorted((ROOT / "docs" / "tutorials").glob("*.md"))
DOCS = [
    ROOT / "README.md",
    ROOT / "CONTRIBUTING.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "docs").glob("*.rst")),
    *TUTORIALS,
]
#: a repository path in backticks: `fastsuper/mc/simd.py`, `scripts/train_bound.py`, ...
REPO_PATH = re.compile(r"`((?:fastsuper|scripts|tests|benchmarks|docs)/[\w./-]*\w)`")
#: what ``make docs`` writes (absent from a fresh clone; .gitignore lists them)
BUILT = ("docs/_build/", "docs/generated/")
FENCE = re.compile(r"^```(\S*)[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


def python_blocks(text: str) -> list[str]:
    return [body for info, body in FENCE.findall(text) if info == "python"]


def test_fence_parser():
    text = "a\n```python\nx = 1\n```\n```sh\nls\n```\n```python\ny = x + 1\n```\n"
    assert python_blocks(text) == ["x = 1\n", "y = x + 1\n"]


def test_there_are_tutorials():
    names = {p.stem for p in TUTORIALS}
    assert {"own_weights", "pentagon"} <= names


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_runs(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # tutorials may write files
    blocks = python_blocks(path.read_text())
    assert blocks, f"{path.name} has no python blocks"
    namespace: dict = {"__name__": f"tutorial_{path.stem}"}
    for i, code in enumerate(blocks):
        try:
            exec(compile(code, f"{path.name}[block {i}]", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the message names the block
            raise AssertionError(f"{path.name}, block {i} failed: {exc!r}\n{code}") from exc


def test_readme_snippet_says_what_loss_and_gain_are(capsys):
    """The README's quick-start snippet runs and prints the loss and the gain with what
    they mean (sums over the features) in one line, and a positive gain to compare."""
    readme = Path(__file__).resolve().parents[1] / "README.md"
    (code,) = python_blocks(readme.read_text())[:1]
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    est_line, exact_line = capsys.readouterr().out.strip().splitlines()
    assert est_line.startswith("loss ") and ", gain " in est_line
    assert "(sums over the 1000 features: loss = E sum_j I_j (x_j - x_hat_j)^2, gain = " in (
        est_line
    )
    loss, gain = (float(x.split()[-1]) for x in exact_line.removeprefix("exact: ").split(","))
    assert gain > 0 and loss > 0


def test_low_order_probabilities_are_described_per_feature():
    """``LowOrderTerms.p1`` is per feature (P(only feature i is active)); its sum is
    P(K = 1).  The tutorials must not call the array itself P(K = 1)."""
    for path in TUTORIALS:
        for line in path.read_text().splitlines():
            if "p1" in line and "P(K = 1)" in line:
                assert "sum" in line, f"{path.name}: {line.strip()}"


def test_the_docs_name_files_that_exist():
    named = {
        (doc.relative_to(ROOT).as_posix(), path)
        for doc in DOCS
        for path in REPO_PATH.findall(doc.read_text())
    }
    assert len(named) > 10  # the pattern finds the docs' paths
    missing = sorted(
        (doc, p) for doc, p in named if not p.startswith(BUILT) and not (ROOT / p).exists()
    )
    assert not missing, f"paths named in the docs that do not exist: {missing}"
