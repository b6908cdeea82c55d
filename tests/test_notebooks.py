"""The Colab notebooks: each runs top to bottom in SMOKE mode, and each is wired as documented.

Execution is a real Jupyter kernel (nbclient + ipykernel, the `test` extra) started in notebooks/,
as Jupyter would, with GAU_JAX_SMOKE=1 (seconds-long runs, nothing downloaded) and the runs'
folders under a temporary GAU_JAX_NOTEBOOK_WORKDIR; any cell error fails the test, naming the
cell. The other tests read the files only: every notebook's set-up cell installs the package
with the same pip command as the README, the README links every notebook with an "Open in Colab"
badge, and the committed notebooks carry no outputs but figures (notebooks/strip_outputs.py).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
REPO_URL = "https://github.com/gau-jax/gau_jax"
COLAB = "https://colab.research.google.com/github/gau-jax/gau_jax/blob/main/notebooks/"
# What each notebook must print in SMOKE mode, and how many figures it must draw (a cell that
# silently did nothing fails here).
EXPECTED_OUTPUT = {
    "01_quickstart.ipynb": (["gau_alpha_base", "last_hidden_state", "top-5 for [MASK]",
                             "dev accuracy"], 2),
    "02_ladder_side_tuning.ipynb": (["trainable", "lst (cached)", "break-even", "mu = "], 3),
    "03_length_generalization.ipynb": (["softmax_plus", "relu2", "entropy (nats)"], 3),
    "04_pretrained_checkpoints.ipynb": (["format: hf", "parity", "dev accuracy"], 0),
}
SMOKE_TIMEOUT_S = 300  # per cell; a whole SMOKE run takes well under a minute on a free CPU


def _read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def _setup_cell(path: Path) -> str:
    return next(_source(c) for c in _read(path)["cells"] if c["cell_type"] == "code")


def _readme_install_spec() -> str:
    specs = set(re.findall(r'pip install "(gau_jax @ git\+[^"]+)"',
                           (ROOT / "README.md").read_text(encoding="utf-8")))
    assert len(specs) == 1, f"README.md: expected one pip install \"gau_jax @ git+...\", {specs}"
    return specs.pop()


def test_notebooks_are_found():
    """An empty NOTEBOOKS list would parametrise test_notebook_runs_in_smoke_mode into nothing."""
    assert {p.name for p in NOTEBOOKS} == set(EXPECTED_OUTPUT)


def test_setup_cells_install_what_the_readme_says():
    spec = _readme_install_spec()
    assert spec.startswith(f"gau_jax @ git+{REPO_URL}@"), spec
    for path in NOTEBOOKS:
        setup = _setup_cell(path)
        assert f'PACKAGE = "{spec}"' in setup, f"{path.name}: set-up cell does not install {spec}"
        assert '%pip install -q "{PACKAGE}"' in setup, f"{path.name}: no %pip install of PACKAGE"
        assert "GAU_JAX_SMOKE" in setup and "jax.devices()" in setup, path.name


def test_readme_and_notebooks_link_colab():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for path in NOTEBOOKS:
        badge = f"({COLAB}{path.name})"
        assert badge in readme, f"README.md lacks the Open in Colab badge of {path.name}"
        assert badge in _source(_read(path)["cells"][0]), f"{path.name}: no badge in cell 0"


def test_committed_notebooks_are_stripped():
    """No text outputs, errors or execution counts in git; figures (image/png) may stay."""
    for path in NOTEBOOKS:
        for i, cell in enumerate(_read(path)["cells"]):
            if cell["cell_type"] != "code":
                continue
            assert cell.get("execution_count") is None, f"{path.name} cell {i}: execution_count"
            for out in cell.get("outputs", []):
                assert out["output_type"] == "display_data" and set(out["data"]) <= {
                    "image/png", "text/plain"}, f"{path.name} cell {i}: unstripped {out}"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_in_smoke_mode(path, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    monkeypatch.setenv("GAU_JAX_SMOKE", "1")
    monkeypatch.setenv("GAU_JAX_NOTEBOOK_WORKDIR", str(tmp_path))
    monkeypatch.setenv("GAU_JAX_TFDS_DIR", str(tmp_path / "tfds"))
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=SMOKE_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    t0 = time.time()
    try:
        client.execute()
    except CellExecutionError as e:
        raise AssertionError(f"{path.name}: {e}") from None
    print(f"\n[notebook] {path.name}: SMOKE run {time.time() - t0:.1f}s")
    text = "\n".join(o.get("text", "") + "".join(o.get("data", {}).get("text/plain", ""))
                     for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    needles, min_figures = EXPECTED_OUTPUT[path.name]
    for needle in needles:
        assert needle in text, f"{path.name}: the SMOKE run never printed {needle!r}"
    figures = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
                  for o in c.outputs)
    assert figures >= min_figures, f"{path.name}: {figures} figures, expected {min_figures}"
