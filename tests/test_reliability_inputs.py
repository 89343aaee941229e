"""Valid input never crashes, and invalid input is refused at its key with one rule per kind.

* user text (scenario, site, step, cohort and pathway names) is drawn literally in every figure,
  never parsed as mathtext: ``run`` and ``compare`` succeed with ``$`` in every name;
* every distribution family, over the whole range validation allows, samples and answers
  ``mean`` / ``ppf`` / ``sf`` with finite (or documented infinite) values, and a parameter
  combination that would overflow is refused with its reason;
* control characters in names, seeds outside ``0..2**63-1``, YAML tags beyond the core ones and
  quoted numbers are refused, the same way in the file, in ``--set`` and on the command line;
* only regular files are read as scenarios and report inputs, and never more than the size
  limit: a FIFO, ``/dev/zero`` or a directory is refused at once (exit 2).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

# --------------------------------------------------------------------------- helpers

SMALL = """\
name: {name}
horizon_days: 120
replications: 3
seed: 11
currency: HKD
arrivals: {{rate_per_year: 30}}
cohorts:
  - {{name: {cohort}, share: 1, pathway: {pathway}, time_to_death: {{dist: exponential, mean: 300}}}}
sites:
  {site}: {{slots: 2, cost_per_use: 100}}
pathways:
  {pathway}:
    steps:
      - {{name: {step}, kind: apheresis, duration: 1, cost: 10}}
      - {{name: make, kind: manufacture, site: {site}, reserve_from: {step}, duration: {{dist: uniform, low: 9, high: 12}}}}
      - {{name: infusion, kind: infusion, duration: 1}}
"""

DOLLAR_NAMES = {
    "name": "'Costs $\\badcommand$ and $5-$10'",
    "cohort": "'a $x$ b $'",
    "pathway": "'p$1$'",
    "site": "'dev $\\oops$'",
    "step": "'aph $\\frac{{$'",
}


def write_small(path: Path, **names: str) -> Path:
    fields = {"name": "small", "cohort": "a", "pathway": "p", "site": "dev", "step": "aph", **names}
    path.write_text(SMALL.format(**fields), encoding="utf-8")
    return path


def cli(*args: object, timeout: float = 120, env: dict[str, str] | None = None,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "v2vsim", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env or ENV, cwd=ROOT, input=input)


# --------------------------------------------------------------------------- item 10: mathtext


def _svg_texts(path: Path) -> list[str]:
    """Every string the SVG draws as text (``svg.fonttype: none`` keeps text as <text>)."""
    tree = ET.parse(path)  # also: the SVG is well-formed XML
    return ["".join(el.itertext()) for el in tree.iter() if el.tag.endswith("}text")]


@pytest.fixture(scope="module")
def text_svg_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Figures whose SVGs keep text as text, so that what is drawn can be read back."""
    rc = tmp_path_factory.mktemp("mplrc")
    (rc / "matplotlibrc").write_text("svg.fonttype: none\n", encoding="utf-8")
    return {**ENV, "MATPLOTLIBRC": str(rc)}


def test_run_draws_dollar_names_literally(tmp_path: Path, text_svg_env: dict[str, str]) -> None:
    scenario = write_small(tmp_path / "dollars.yaml", **DOLLAR_NAMES)
    out = tmp_path / "out"
    proc = cli("run", scenario, "-o", out, "-n", "3", env=text_svg_env)
    assert proc.returncode == 0, proc.stderr
    svgs = sorted((out / "figures").glob("*.svg"))
    pngs = sorted((out / "figures").glob("*.png"))
    assert len(svgs) >= 5 and len(pngs) == len(svgs)
    assert all(p.stat().st_size > 1000 for p in pngs)
    drawn = "\n".join(t for svg in svgs for t in _svg_texts(svg))
    # (step names are not drawn in a run's figures; they are in the scenario all the same)
    for literal in ("Costs $\\badcommand$ and $5-$10", "a $x$ b $", "dev $\\oops$"):
        assert literal in drawn, literal


def test_compare_draws_dollar_names_literally(tmp_path: Path, text_svg_env: dict[str, str]) -> None:
    first = write_small(tmp_path / "one.yaml", **DOLLAR_NAMES)
    second = write_small(tmp_path / "two.yaml", **{**DOLLAR_NAMES, "name": "'$$ two $\\end{x}'"})
    out = tmp_path / "cmp"
    proc = cli("compare", first, second, "-o", out, "-n", "3", env=text_svg_env)
    assert proc.returncode == 0, proc.stderr
    svgs = sorted(out.rglob("*.svg"))
    assert len(svgs) >= 3
    drawn = "\n".join(t for svg in svgs for t in _svg_texts(svg))
    assert "$$ two $\\end{x}" in drawn and "$5-$10" in drawn
