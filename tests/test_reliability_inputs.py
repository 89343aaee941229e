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


# --------------------------------------------------------------------------- the hostile table

PLAIN = SMALL.format(name="small", cohort="a", pathway="p", site="dev", step="aph")


def _edit(old: str, new: str) -> str:
    assert old in PLAIN, old
    return PLAIN.replace(old, new, 1)


def _step(duration: str) -> str:
    return _edit("{name: aph, kind: apheresis, duration: 1,", f"{{name: aph, kind: apheresis, duration: {duration},")


_STEP_LINE = 14
_DUR = "pathways.p.steps[0].duration"
_CONTROL = "must not contain control characters"
_TAG = "is not allowed in a scenario"

#: (id, scenario text, line, key path, words the message must hold). Every one is refused with a
#: ScenarioError naming FILE:LINE and the key; none raises anything else.
HOSTILE: list[tuple[str, str, int, str, str]] = [
    # item 12: control characters in every name field (C0, DEL, C1; tab and newline too)
    *[(f"name-U+{ord(ch):04X}", _edit("name: small", f'name: "sm{esc}all"'), 1, "name", f"U+{ord(ch):04X}")
      for ch, esc in (("\x00", "\\0"), ("\x07", "\\a"), ("\x08", "\\b"), ("\t", "\\t"), ("\n", "\\n"),
                      ("\r", "\\r"), ("\x1b", "\\e"), ("\x7f", "\\x7f"), ("\x85", "\\N"), ("\x9f", "\\x9f"))],
    ("cohort-name-ctrl", _edit("name: a,", 'name: "a\\x01",'), 8, "cohorts[0].name", _CONTROL),
    ("step-name-ctrl", PLAIN.replace("aph,", '"a\\x02ph",').replace("from: aph", 'from: "a\\x02ph"'), 14,
     "pathways.p.steps[0].name", _CONTROL),
    ("step-name-C1", PLAIN.replace("aph,", '"aph\\x9b",').replace("from: aph", 'from: "aph\\x9b"'), 14,
     "pathways.p.steps[0].name", "U+009B"),
    ("site-key-ctrl", PLAIN.replace("dev", '"d\\x1fev"'), 10, "sites.'d\\x1fev'", _CONTROL),
    ("pathway-key-ctrl", PLAIN.replace("pathway: p", 'pathway: "p\\x0b"').replace("  p:", '  "p\\x0b":'),
     8, "cohorts[0].pathway", _CONTROL),
    ("currency-ctrl", _edit("currency: HKD", 'currency: "HK\\x0cD"'), 5, "currency", _CONTROL),
    ("description-escape", _edit("name: small", 'name: small\ndescription: "ok\\nthen \\x1b[31m"'), 2,
     "description", "U+001B"),
    ("reserve-from-ctrl", _edit("reserve_from: aph", 'reserve_from: "aph\\x85"'), 15,
     "pathways.p.steps[1].reserve_from", _CONTROL),
    # item 12: YAML tags other than the core ones, at their key
    ("tag-binary", _edit("name: small", "name: !!binary aGVsbG8="), 1, "name", "'!!binary' " + _TAG),
    ("tag-set", _edit("name: small", "name: !!set {a, b}"), 1, "name", "'!!set' " + _TAG),
    ("tag-omap", _edit("sites:\n  dev: {", "sites: !!omap\n  - dev: {"), 9, "sites", "'!!omap' " + _TAG),
    ("tag-pairs", _edit("sites:\n  dev: {", "sites: !!pairs\n  - dev: {"), 9, "sites", "'!!pairs' " + _TAG),
    ("tag-python-int", _edit("seed: 11", "seed: !!python/int 11"), 4, "seed", "'!!python/int' " + _TAG),
    ("tag-python-object", _edit("seed: 11", "seed: !!python/object/apply:os.system [echo]"), 4, "seed",
     "'!!python/object/apply:os.system' " + _TAG),
    ("tag-python-name", _edit("currency: HKD", "currency: !!python/name:os.system"), 5, "currency", _TAG),
    ("tag-custom", _edit("replications: 3", "replications: !roll 3"), 3, "replications", "'!roll' " + _TAG),
    ("tag-local-map", _edit("arrivals: {rate_per_year: 30}", "arrivals: !arr {rate_per_year: 30}"), 6,
     "arrivals", _TAG),
    ("tag-value", _edit("horizon_days: 120", "horizon_days: !!value 120"), 2, "horizon_days", _TAG),
    ("tag-in-distribution", _step("{dist: !!binary ZXhw, mean: 2}"), _STEP_LINE, _DUR + ".dist", _TAG),
    ("tag-in-list", _edit("kind: apheresis, duration: 1, cost: 10}", "kind: apheresis, duration: 1, cost: 10, "
                          "starts_on: [mon, !!binary dHVl]}"), 14, "pathways.p.steps[0].starts_on[1]", _TAG),
    # item 12: a quoted number is refused for every number, whatever its kind
    *[(f"quoted-{key}", _edit(f"{key}: {value}", f"{key}: '{value}'"), line, key,
       f"must be a number: write {value} without quotes")
      for key, value, line in (("horizon_days", 120, 2), ("replications", 3, 3), ("seed", 11, 4))],
    ("quoted-slots", _edit("slots: 2", "slots: '2'"), 10, "sites.dev.slots", "write 2 without quotes"),
    ("quoted-slots-double", _edit("slots: 2", 'slots: "2"'), 10, "sites.dev.slots", "write 2 without quotes"),
    ("quoted-rate", _edit("rate_per_year: 30", "rate_per_year: '30'"), 6, "arrivals.rate_per_year",
     "write 30 without quotes"),
    ("quoted-share", _edit("share: 1,", "share: '1',"), 8, "cohorts[0].share", "write 1 without quotes"),
    ("quoted-cost", _edit("cost_per_use: 100", "cost_per_use: '100'"), 10, "sites.dev.cost_per_use",
     "write 100 without quotes"),
    ("quoted-duration", _step("'1'"), _STEP_LINE, _DUR, "write 1 without quotes"),
    ("quoted-duration-float", _step("' 1.5 '"), _STEP_LINE, _DUR, "write 1.5 without quotes"),
    ("quoted-exp-mean", _step("{dist: exponential, mean: '2'}"), _STEP_LINE, _DUR + ".mean", "write 2 without quotes"),
    ("quoted-uniform", _step("{dist: uniform, low: '1e0', high: 2}"), _STEP_LINE, _DUR + ".low",
     "write 1e0 without quotes"),
    ("quoted-empirical", _step("{dist: empirical, values: [1, '2']}"), _STEP_LINE, _DUR + ".values[1]",
     "write 2 without quotes"),
    ("quoted-failure", _edit("duration: 1, cost: 10}", "duration: 1, cost: 10, failure_probability: '0.1'}"),
     14, "pathways.p.steps[0].failure_probability", "write 0.1 without quotes"),
    ("quoted-priority", _edit("share: 1,", "share: 1, priority: '-1',"), 8, "cohorts[0].priority",
     "write -1 without quotes"),
    ("bool-number", _edit("slots: 2", "slots: true"), 10, "sites.dev.slots", "must be a number, not true"),
    # item 12: the seed's range in the file (the CLI's is tested below)
    ("seed-2^63", _edit("seed: 11", f"seed: {2**63}"), 4, "seed", f"less than {2**63}"),
    ("seed-negative", _edit("seed: 11", "seed: -1"), 4, "seed", "at least 0"),
    ("seed-huge", _edit("seed: 11", "seed: " + "9" * 40), 4, "seed", f"less than {2**63}"),
    # item 11: distribution bounds, each with its reason
    ("weibull-shape-tiny", _step("{dist: weibull, shape: 0.001, scale: 3}"), _STEP_LINE, _DUR + ".shape",
     "at least 0.01: below 0.01 the mean exceeds"),
    ("weibull-shape-0.0015-median", _step("{dist: weibull, shape: 0.0015, median: 3}"), _STEP_LINE,
     _DUR + ".shape", "at least 0.01"),
    ("weibull-shape-huge", _step("{dist: weibull, shape: 1e6, scale: 3}"), _STEP_LINE, _DUR + ".shape",
     "at most 100: above 100"),
    ("weibull-scale-huge", _step("{dist: weibull, shape: 1, scale: 1e300}"), _STEP_LINE, _DUR + ".scale",
     "at most 1000000000: days"),
    ("gamma-sd-1e200", _step("{dist: gamma, mean: 3, sd: 1e200}"), _STEP_LINE, _DUR + ".sd", "at most 1000000000"),
    ("gamma-cv-high", _step("{dist: gamma, mean: 1e-6, sd: 1e9}"), _STEP_LINE, _DUR,
     "must be between 0.0001 and 100"),
    ("gamma-cv-low", _step("{dist: gamma, mean: 1e9, sd: 1e-6}"), _STEP_LINE, _DUR, "it is a fixed value"),
    ("gamma-sd-tiny", _step("{dist: gamma, mean: 3, sd: 1e-300}"), _STEP_LINE, _DUR + ".sd",
     "at least 1e-06: days: a tenth of a second"),
    ("lognormal-sigma", _step("{dist: lognormal, median: 1e-6, p90: 1e9}"), _STEP_LINE, _DUR, "sigma"),
    ("lognormal-p90-huge", _step("{dist: lognormal, median: 1, p90: 1e300}"), _STEP_LINE, _DUR + ".p90",
     "at most 1000000000"),
    ("exponential-mean-tiny", _step("{dist: exponential, mean: 5e-324}"), _STEP_LINE, _DUR + ".mean", "at least 1e-06"),
    ("exponential-median-huge", _step("{dist: exponential, median: 1.7e308}"), _STEP_LINE, _DUR + ".median",
     "at most 1000000000"),
    ("fixed-huge", _step("1e300"), _STEP_LINE, _DUR, "at most 1000000000"),
    ("fixed-explicit-huge", _step("{dist: fixed, value: 1e10}"), _STEP_LINE, _DUR + ".value", "at most"),
    ("uniform-high-huge", _step("{dist: uniform, low: 0, high: 1.7e308}"), _STEP_LINE, _DUR + ".high", "at most"),
    ("triangular-huge", _step("{dist: triangular, low: 0, mode: 1, high: 1e100}"), _STEP_LINE, _DUR + ".high",
     "at most"),
    ("empirical-value-huge", _step("{dist: empirical, values: [1, 1e200]}"), _STEP_LINE, _DUR + ".values[1]",
     "at most"),
    ("death-clock-huge", _edit("mean: 300}", "mean: 1e300}"), 8, "cohorts[0].time_to_death.mean", "at most"),
    # item 11: runs too large for one replication, refused at validation
    ("rate-1e308", _edit("rate_per_year: 30", "rate_per_year: 1e308"), 6, "arrivals",
     "more than 100,000,000"),
    ("rate-1e12", _edit("rate_per_year: 30", "rate_per_year: 1e12"), 6, "arrivals", "referrals per replication"),
    ("interarrival-tiny", _edit("{rate_per_year: 30}", "{interarrival: {dist: exponential, mean: 1e-6}}"), 6,
     "arrivals", "more than 100,000,000"),
]


@pytest.mark.parametrize("case", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_scenario_is_refused_at_its_key(case: tuple[str, str, int, str, str], tmp_path: Path) -> None:
    from v2vsim.scenario import ScenarioError, load_scenario

    _, text, line, key, words = case
    path = tmp_path / "hostile.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    shown = [str(p) for p in info.value.problems]
    assert any(s.startswith(f"{path}:{line}: {key}: ") and words in s for s in shown), shown
    assert all(ch == "\n" or ch.isprintable() for ch in str(info.value)), "control characters echoed"


def test_hostile_table_is_large() -> None:
    assert len(HOSTILE) >= 70
