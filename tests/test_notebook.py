"""The notebooks run from a clean working copy, and are committed without outputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_the_comparison_notebook_is_collected() -> None:
    assert "local_vs_overseas.ipynb" in [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]
    assert "widgets" not in nb.metadata  # no widget state either


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_without_error(path: Path, tmp_path: Path) -> None:
    # A working copy: the notebook writes its figures under results/ of the copy, never of the
    # checkout. The package itself is the installed one.
    copy = tmp_path / "repo"
    for folder in ("scenarios", "notebooks"):
        shutil.copytree(ROOT / folder, copy / folder)
    nb = nbformat.read(copy / "notebooks" / path.name, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(copy)}})
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any error
    errors = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
              if out.output_type == "error"]
    assert errors == []
    if path.stem == "local_vs_overseas":
        figures = copy / "results" / "notebook_figures"
        for stem in ("outcomes_per_100", "vein_to_vein", "cumulative_incidence", "cost_per_patient"):
            assert (figures / f"{stem}.png").stat().st_size > 10_000
        images = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
                  if "image/png" in out.get("data", {})]
        assert len(images) == 5
