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
     "at most 1000000000000: days"),
    ("gamma-sd-1e200", _step("{dist: gamma, mean: 3, sd: 1e200}"), _STEP_LINE, _DUR + ".sd", "at most 1000000000000"),
    ("gamma-cv-high", _step("{dist: gamma, mean: 1e-6, sd: 1e9}"), _STEP_LINE, _DUR,
     "must be between 0.0001 and 100"),
    ("gamma-cv-low", _step("{dist: gamma, mean: 1e9, sd: 1e-6}"), _STEP_LINE, _DUR, "it is a fixed value"),
    ("gamma-sd-tiny", _step("{dist: gamma, mean: 3, sd: 1e-300}"), _STEP_LINE, _DUR, "it is a fixed value"),
    ("gamma-both-tiny-cv-huge", _step("{dist: gamma, mean: 5e-324, sd: 1}"), _STEP_LINE, _DUR, "above 100"),
    ("lognormal-sd-tiny", _step("{dist: lognormal, mean: 1e-7, sd: 5e-324}"), _STEP_LINE, _DUR, "below 1e-06"),
    ("lognormal-p90-next", _step("{dist: lognormal, median: 1, p90: 1.0000000000000002}"), _STEP_LINE, _DUR,
     "is a fixed value"),
    ("lognormal-cv-overflow", _step("{dist: lognormal, mean: 1e-200, sd: 1e9}"), _STEP_LINE, _DUR, "sigma"),
    ("lognormal-sigma", _step("{dist: lognormal, median: 1e-6, p90: 1e9}"), _STEP_LINE, _DUR, "sigma"),
    ("lognormal-p90-huge", _step("{dist: lognormal, median: 1, p90: 1e300}"), _STEP_LINE, _DUR + ".p90",
     "at most 1000000000000"),
    ("exponential-mean-zero", _step("{dist: exponential, mean: 0}"), _STEP_LINE, _DUR + ".mean", "greater than 0"),
    ("exponential-median-huge", _step("{dist: exponential, median: 1.7e308}"), _STEP_LINE, _DUR + ".median",
     "at most 1000000000000"),
    ("fixed-huge", _step("1e300"), _STEP_LINE, _DUR, "at most 1000000000000"),
    ("fixed-explicit-huge", _step("{dist: fixed, value: 1e13}"), _STEP_LINE, _DUR + ".value", "at most"),
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
    ("interarrival-tiny", _edit("{rate_per_year: 30}", "{interarrival: {dist: exponential, mean: 1e-300}}"), 6,
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


# --------------------------------------------------------------------------- item 11: properties

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

PROPERTY = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

#: Every magnitude a float can have, the edges of the allowed ranges, and plain values.
_EDGES = [0.0, 5e-324, 1e-300, 1e-7, 1e-6, 1.0000001e-6, 0.001, 0.0058, 0.01, 0.5, 1.0, 2.0, 100.0,
          100.0000001, 1e6, 1e9, 1e12, 1.0000001e12, 1e154, 1e200, 1.7976931348623157e308]
number = st.one_of(st.sampled_from(_EDGES),
                   st.floats(min_value=-323.0, max_value=308.0).map(lambda e: 10.0 ** e),
                   st.floats(min_value=0.0, max_value=1e13, allow_nan=False))

FAMILIES = {
    "fixed": st.fixed_dictionaries({"value": number}),
    "uniform": st.fixed_dictionaries({"low": number, "high": number}),
    "triangular": st.fixed_dictionaries({"low": number, "mode": number, "high": number}),
    "exponential": st.one_of(st.fixed_dictionaries({"mean": number}), st.fixed_dictionaries({"median": number})),
    "lognormal": st.one_of(st.fixed_dictionaries({"median": number, "p90": number}),
                           st.fixed_dictionaries({"mean": number, "sd": number})),
    "gamma": st.fixed_dictionaries({"mean": number, "sd": number}),
    "weibull": st.one_of(st.fixed_dictionaries({"shape": number, "scale": number}),
                         st.fixed_dictionaries({"shape": number, "median": number})),
    "empirical": st.fixed_dictionaries({"values": st.lists(number, min_size=1, max_size=5)}).flatmap(
        lambda d: st.one_of(st.just(d), st.lists(number, min_size=len(d["values"]), max_size=len(d["values"]))
                            .map(lambda w: {**d, "weights": w}))),
}


def _scenario_with(duration: dict, clock: dict | None = None) -> dict:
    from ruamel.yaml import YAML

    data = YAML(typ="safe", pure=True).load(PLAIN)
    data["pathways"]["p"]["steps"][0]["duration"] = duration
    if clock is not None:
        data["cohorts"][0]["time_to_death"] = clock
    return data


def _check_distribution(spec: object) -> None:
    """What the engines ask of a distribution, with every warning an error (pytest's setting)."""
    import numpy as np

    u = np.concatenate([[0.0, 5e-324, 1e-300, 1e-12, 0.5, 1 - 1e-12, np.nextafter(1.0, 0.0)],
                        np.random.default_rng(5).random(200)])
    draws = spec.ppf(u)
    assert draws.shape == u.shape and np.all(np.isfinite(draws)) and np.all(draws >= 0)
    assert np.all(np.diff(spec.ppf(np.sort(u))) >= 0)  # monotone: common random numbers align
    sampled = spec.sample(np.random.default_rng(1), 64)
    assert np.all(np.isfinite(sampled)) and np.all(sampled >= 0)
    mean = spec.mean()
    assert math.isfinite(mean) and mean >= 0
    t = np.array([0.0, 1e-6, 1.0, 365.0, 3e5, 1e9, 1e15])
    sf = spec.sf(t)
    assert np.all((sf >= 0) & (sf <= 1))
    assert np.all(spec.cumhaz(t) >= 0)  # inf allowed: past the support
    q = spec.isf(np.array([1e-12, 0.1, 0.5, 0.9, 1.0 - 1e-16]))
    assert np.all(np.isfinite(q)) and np.all(q >= 0)
    assert not np.any(np.isnan(spec.isf(np.array([0.0, 5e-324, 1e-300]))))  # inf: the top of the support
    e = np.array([0.0, 1e-9, 1.0, 37.0, 700.0])
    assert not np.any(np.isnan(spec.cumhaz_inv(e)))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_allowed_distribution_samples_or_is_refused(family: str) -> None:
    from v2vsim.scenario import ScenarioError
    from v2vsim.scenario.loading import scenario_from_dict

    seen = {"accepted": 0, "refused": 0}

    @PROPERTY
    @given(FAMILIES[family])
    def check(params: dict) -> None:
        duration = {"dist": family, **params}
        try:
            scenario = scenario_from_dict(_scenario_with(duration, clock=duration))
        except ScenarioError:
            seen["refused"] += 1
            return
        seen["accepted"] += 1
        _check_distribution(scenario.pathways["p"].steps[0].duration)
        _check_distribution(scenario.cohorts[0].time_to_death)

    check()
    assert seen["accepted"] >= 10 and seen["refused"] >= 10, seen  # both sides of every bound reached


@PROPERTY
@given(rate=number, horizon=st.sampled_from([1e-9, 1.0, 120.0, 146000.0]))
def test_every_arrival_rate_runs_or_is_refused(rate: float, horizon: float) -> None:
    from v2vsim.engine.replication import run_replication
    from v2vsim.scenario import ScenarioError
    from v2vsim.scenario.loading import scenario_from_dict

    data = _scenario_with(1)
    data["arrivals"] = {"rate_per_year": rate}
    data["horizon_days"] = horizon
    data["drain_days"] = 30
    try:
        scenario = scenario_from_dict(data)
    except ScenarioError:
        return
    if scenario.expected_referrals() > 2000:
        return  # valid, but too long to simulate here; the arrival days alone are checked below
    out = run_replication(scenario, 7, 0)
    n = len(out.columns["outcome"])
    assert n <= 20 * scenario.expected_referrals() + 50 and out.events_processed >= 0


def test_a_gap_past_the_float_range_is_infinite_without_a_warning() -> None:
    import numpy as np

    from v2vsim.engine.replication import arrival_days
    from v2vsim.engine.rng import Streams
    from v2vsim.scenario.loading import scenario_from_dict

    for rate in (5e-324, 1e-306, 1e-300):
        data = _scenario_with(1)
        data["arrivals"] = {"rate_per_year": rate}
        scenario = scenario_from_dict(data)
        days = arrival_days(scenario, Streams(1, 0))
        assert days.size == 0 and days.dtype == np.float64


# --------------------------------------------------------------------------- item 12: one rule in the CLI

MAX_SEED = 2**63 - 1


@pytest.fixture
def plain(tmp_path: Path) -> Path:
    path = tmp_path / "plain.yaml"
    path.write_text(PLAIN, encoding="utf-8")
    return path


@pytest.mark.parametrize("command", ["run", "compare", "sweep", "psa"])
@pytest.mark.parametrize("seed", [str(2**63), str(2**64 + 5), "-1"])
def test_cli_refuses_a_seed_outside_the_file_range(plain: Path, tmp_path: Path, command: str, seed: str) -> None:
    from typer.testing import CliRunner

    from v2vsim.cli import app

    args = {"run": ["run", plain], "compare": ["compare", plain, plain],
            "sweep": ["sweep", plain, "--set", "sites.dev.slots=1,2"], "psa": ["psa", plain]}[command]
    result = CliRunner().invoke(app, [*map(str, args), "--seed", seed, "-o", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--seed'" in result.output
    assert not (tmp_path / "out").exists()


def test_cli_refuses_a_seed_outside_the_range_in_a_real_process(plain: Path, tmp_path: Path) -> None:
    proc = cli("run", plain, "--seed", 2**63, "-o", tmp_path / "out", timeout=60)
    assert proc.returncode == 2 and "--seed" in proc.stderr and "Traceback" not in proc.stderr


def test_the_largest_seed_is_written_and_runs_again(plain: Path, tmp_path: Path) -> None:
    first, again = tmp_path / "first", tmp_path / "again"
    proc = cli("run", plain, "--seed", MAX_SEED, "-o", first, "-n", "2", "--no-figures")
    assert proc.returncode == 0, proc.stderr
    assert f"seed: {MAX_SEED}" in (first / "scenario.yaml").read_text(encoding="utf-8")
    proc = cli("run", first / "scenario.yaml", "-o", again, "-n", "2", "--no-figures")
    assert proc.returncode == 0, proc.stderr
    assert (first / "patients.parquet").read_bytes() == (again / "patients.parquet").read_bytes()


@pytest.mark.parametrize("assignment, words", [
    ("sites.dev.slots='2'", "--set sites.dev.slots: must be a number: write 2 without quotes"),
    ('horizon_days="120"', "--set horizon_days: must be a number: write 120 without quotes"),
    ("seed='7'", "--set seed: must be a number: write 7 without quotes"),
    ("pathways.p.steps.aph.duration='3'", "must be a number: write 3 without quotes"),
    (f"seed={2**63}", f"--set seed: must be less than {2**63}"),
    ("name=!!binary aGk=", "YAML tag '!!binary' is not allowed in a value"),
    ("sites.dev.slots=!!set {2}", "YAML tag '!!set' is not allowed in a value"),
    ("currency=!!python/name:os.system", "is not allowed in a value"),
    ('name="a\\x07b"', "--set name: must not contain control characters (U+0007"),
    ("pathways.p.steps.aph.duration={dist: weibull, shape: 0.001, scale: 2}",
     "--set pathways.p.steps.aph.duration.shape: must be at least 0.01: below 0.01"),
    ("arrivals.rate_per_year=1e308", "more than 100,000,000"),
])
def test_set_follows_the_file_rules(plain: Path, assignment: str, words: str) -> None:
    from v2vsim.scenario import ScenarioError
    from v2vsim.scenario.overrides import load_with_overrides

    with pytest.raises(ScenarioError) as info:
        load_with_overrides(plain, [assignment])  # what the CLI's --set does
    assert words in str(info.value), str(info.value)


@pytest.mark.parametrize("assignment, words", [
    ("sites.dev.slots='2'", "--set sites.dev.slots: must be a number: write 2 without quotes"),
    ("name=!!binary aGk=", "YAML tag '!!binary' is not allowed in a value"),
])
def test_set_follows_the_file_rules_on_the_command_line(plain: Path, tmp_path: Path, assignment: str,
                                                        words: str) -> None:
    proc = cli("run", plain, "--set", assignment, "-o", tmp_path / "out", "-n", "2", "--no-figures", timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert words in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


def test_allow_large_does_not_reach_an_overflow(plain: Path, tmp_path: Path) -> None:
    text = PLAIN.replace("rate_per_year: 30", "rate_per_year: 1e308")
    (tmp_path / "huge.yaml").write_text(text, encoding="utf-8")
    proc = cli("run", tmp_path / "huge.yaml", "--allow-large", "-o", tmp_path / "out", timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "arrivals: about inf referrals per replication" in proc.stderr or "referrals per replication" in proc.stderr


def test_json_schema_refuses_control_characters_in_names() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from ruamel.yaml import YAML

    from v2vsim.scenario.json_schema import scenario_json_schema

    validator = jsonschema.Draft202012Validator(scenario_json_schema())
    good = YAML(typ="safe", pure=True).load(PLAIN)
    assert not list(validator.iter_errors(good))
    for mutate in (lambda d: d.update(name="a\x07b"),
                   lambda d: d["cohorts"][0].update(name="a\nb"),
                   lambda d: d.update(sites={"d\x85ev": d["sites"]["dev"]}),
                   lambda d: d.update(description="ok\n\tthen \x1b")):
        data = YAML(typ="safe", pure=True).load(PLAIN)
        mutate(data)
        assert list(validator.iter_errors(data)), data
    data = YAML(typ="safe", pure=True).load(PLAIN)
    data["description"] = "two\nlines\tand a tab"
    assert not list(validator.iter_errors(data))


# --------------------------------------------------------------------------- item 13: only regular files


def _assert_refused_promptly(args: list[object], words: str, timeout: float = 30) -> None:
    import time

    start = time.monotonic()
    proc = cli(*args, timeout=timeout)  # a read that blocks or never ends fails with TimeoutExpired
    assert proc.returncode == 2, proc.stderr
    assert words in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert time.monotonic() - start < timeout


@pytest.mark.parametrize("command", ["validate", "run", "compare"])
def test_a_fifo_is_refused_without_blocking(tmp_path: Path, plain: Path, command: str) -> None:
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    args: list[object] = {"validate": ["validate", fifo], "run": ["run", fifo, "-o", tmp_path / "o"],
                          "compare": ["compare", plain, fifo, "-o", tmp_path / "o"]}[command]
    _assert_refused_promptly(args, f"{fifo}: is a FIFO (named pipe), not a scenario file")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_a_device_is_refused_without_reading_it(tmp_path: Path, device: str) -> None:
    if not os.path.exists(device):
        pytest.skip(f"no {device}")
    _assert_refused_promptly(["run", device, "-o", tmp_path / "o"], f"{device}: is a character device")


def test_a_directory_and_a_symlink_to_a_device_are_refused(tmp_path: Path) -> None:
    _assert_refused_promptly(["validate", tmp_path], f"{tmp_path}: is a directory, not a scenario file")
    link = tmp_path / "zero.yaml"
    link.symlink_to("/dev/zero")
    _assert_refused_promptly(["validate", link], f"{link}: is a character device")


def test_only_the_size_limit_is_read(tmp_path: Path) -> None:
    from v2vsim.scenario.yaml_io import MAX_FILE_BYTES, UnreadableFile, read_text_file

    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (MAX_FILE_BYTES + 1))
    _assert_refused_promptly(["validate", big], f"file is larger than {MAX_FILE_BYTES} bytes")
    exact = tmp_path / "exact.yaml"
    exact.write_bytes(b"#" * MAX_FILE_BYTES)
    assert len(read_text_file(exact)) == MAX_FILE_BYTES
    with pytest.raises(UnreadableFile, match="larger than 10 bytes"):
        read_text_file(exact, limit=10)


def test_a_life_table_fifo_is_refused(tmp_path: Path) -> None:
    from v2vsim.scenario import ScenarioError, load_scenario

    os.mkfifo(tmp_path / "life.csv")
    text = PLAIN + "economics:\n  life_table: life.csv\n"
    (tmp_path / "eco.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError, match="life.csv: is a FIFO"):
        load_scenario(tmp_path / "eco.yaml")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("run")
    (folder / "plain.yaml").write_text(PLAIN, encoding="utf-8")
    proc = cli("run", folder / "plain.yaml", "-o", folder / "res", "-n", "2", "--no-figures")
    assert proc.returncode == 0, proc.stderr
    return folder / "res"


@pytest.mark.parametrize("victim", ["manifest.json", "scenario.yaml", "summary.csv", "scenario_source.yaml"])
def test_report_refuses_a_fifo_among_its_inputs(tmp_path: Path, run_dir: Path, victim: str) -> None:
    import shutil

    out = tmp_path / "res"
    shutil.copytree(run_dir, out)
    (out / victim).unlink()
    os.mkfifo(out / victim)
    proc = cli("report", out, "-o", tmp_path / "r.html", timeout=30)
    assert "Traceback" not in proc.stderr
    if victim == "scenario_source.yaml":  # optional: the report is written without it
        assert proc.returncode == 0, proc.stderr
    else:
        assert proc.returncode in (1, 2) and victim in proc.stderr, proc.stderr


def test_report_reads_regular_files_only(tmp_path: Path) -> None:
    from v2vsim.outputs.report import ReportError
    from v2vsim.outputs.report.load import _read_json, _read_text

    os.mkfifo(tmp_path / "m.json")
    with pytest.raises(ReportError, match="is a FIFO"):
        _read_json(tmp_path / "m.json")
    with pytest.raises(ReportError, match="is a character device"):
        _read_text(Path("/dev/zero"))
