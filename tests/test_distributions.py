"""Distribution specs against closed forms.

Every form of the scenario contract (spec section 1) is validated from the dict a YAML file
would give, sampled with a fixed seed, and compared with values worked out by hand in this file:
means, variances, quantiles and CDFs in closed form (Weibull through the gamma function,
lognormal through erf, gamma with an integer shape through the Erlang sum). The module's own
``mean()`` is checked against the same closed forms, never used as the truth.

Tolerances:
- ``ppf`` at fixed probabilities and ``mean()``: relative 1e-9 (both are closed forms).
- sample mean: 5 standard errors (sample sd / sqrt(n)).
- empirical CDF at an analytic quantile / point: 5 binomial standard errors, sqrt(p(1-p)/n),
  which is 0.0034 at p = 0.9 with n = 200,000.
- sample quantiles: relative 1% (the quantile's standard error is 0.2-0.4% for these shapes).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from v2vsim.scenario.distributions import Distribution, DistributionSpec

FIXED_SEED = 20250415
N = 200_000
Z90 = 1.2815515655446004  # standard normal 90th percentile, Phi^-1(0.9)
LN2 = math.log(2)
LN10 = math.log(10)  # -ln(1 - 0.9): the 90th percentile of a unit exponential

ADAPTER = TypeAdapter(Distribution)


def parse(data: Any) -> DistributionSpec:
    return ADAPTER.validate_python(data)


def norm_cdf(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


@dataclass
class Case:
    """A distribution written as in a scenario file and its hand-worked properties."""

    data: Any
    mean: float
    sd: float
    quantiles: dict[float, float]  # probability -> analytic quantile
    cdf: Callable[[float], float] | None = None
    cdf_points: list[float] = field(default_factory=list)


def _triangular_case() -> Case:
    a, c, b = 3.0, 5.0, 10.0
    fc = (c - a) / (b - a)  # 2/7: the mode's probability

    def quantile(p: float) -> float:
        if p < fc:
            return a + math.sqrt(p * (b - a) * (c - a))
        return b - math.sqrt((1 - p) * (b - a) * (b - c))

    def cdf(x: float) -> float:
        if x <= c:
            return (x - a) ** 2 / ((b - a) * (c - a))
        return 1 - (b - x) ** 2 / ((b - a) * (b - c))

    var = (a * a + b * b + c * c - a * b - a * c - b * c) / 18
    # p = 0.1 falls on the rising side (0.1 < 2/7), 0.5 and 0.9 on the falling side.
    assert quantile(0.1) == pytest.approx(3 + math.sqrt(1.4))
    assert quantile(0.5) == pytest.approx(10 - math.sqrt(17.5))
    return Case({"dist": "triangular", "low": 3, "mode": 5, "high": 10}, mean=6.0,
                sd=math.sqrt(var), quantiles={p: quantile(p) for p in (0.1, 0.5, 0.9)},
                cdf=cdf, cdf_points=[4.0, 5.0, 7.0, 9.5])


def _exponential_case(data: dict[str, Any], mean: float) -> Case:
    return Case(data, mean=mean, sd=mean, quantiles={0.5: mean * LN2, 0.9: mean * LN10},
                cdf=lambda x: 1 - math.exp(-x / mean), cdf_points=[mean / 4, mean, 3 * mean])


def _lognormal_case(data: dict[str, Any], mu: float, sigma: float) -> Case:
    mean = math.exp(mu + sigma**2 / 2)
    sd = mean * math.sqrt(math.exp(sigma**2) - 1)
    return Case(data, mean=mean, sd=sd,
                quantiles={0.5: math.exp(mu), 0.9: math.exp(mu + Z90 * sigma),
                           0.1: math.exp(mu - Z90 * sigma)},
                cdf=lambda x: norm_cdf((math.log(x) - mu) / sigma),
                cdf_points=[0.8 * math.exp(mu), 1.3 * math.exp(mu)])


def _weibull_case(data: dict[str, Any], shape: float, scale: float) -> Case:
    mean = scale * math.gamma(1 + 1 / shape)
    var = scale**2 * (math.gamma(1 + 2 / shape) - math.gamma(1 + 1 / shape) ** 2)
    return Case(data, mean=mean, sd=math.sqrt(var),
                quantiles={0.5: scale * LN2 ** (1 / shape), 0.9: scale * LN10 ** (1 / shape)},
                cdf=lambda x: 1 - math.exp(-((x / scale) ** shape)),
                cdf_points=[0.5 * scale, scale, 2 * scale])


def _erlang_case() -> Case:
    # mean 14, sd 7 -> shape (14/7)^2 = 4 (an integer), scale 7^2/14 = 3.5: the Erlang CDF
    # 1 - exp(-x/s) * sum_{j<4} (x/s)^j / j! is a closed form.
    k, s = 4, 3.5

    def cdf(x: float) -> float:
        y = x / s
        return 1 - math.exp(-y) * sum(y**j / math.factorial(j) for j in range(k))

    return Case({"dist": "gamma", "mean": 14, "sd": 7}, mean=14.0, sd=7.0, quantiles={},
                cdf=cdf, cdf_points=[7.0, 11.0, 14.0, 21.0, 28.0])


LN_SIGMA_Q = math.log(21 / 14) / Z90
LN_SIGMA2_M = math.log1p((3 / 14) ** 2)
WEIBULL_MEDIAN_SCALE = 150 / LN2 ** (1 / 1.3)

CASES: dict[str, Case] = {
    "fixed-number": Case(5, mean=5.0, sd=0.0, quantiles={0.5: 5.0, 0.9: 5.0}),
    "fixed-float": Case(0.25, mean=0.25, sd=0.0, quantiles={0.5: 0.25}),
    "fixed-zero": Case(0, mean=0.0, sd=0.0, quantiles={0.5: 0.0}),
    "fixed-dict": Case({"dist": "fixed", "value": 5}, mean=5.0, sd=0.0, quantiles={0.5: 5.0}),
    "uniform": Case({"dist": "uniform", "low": 3, "high": 7}, mean=5.0, sd=4 / math.sqrt(12),
                    quantiles={0.1: 3.4, 0.5: 5.0, 0.9: 6.6},
                    cdf=lambda x: (x - 3) / 4, cdf_points=[3.5, 5.0, 6.0]),
    "uniform-degenerate": Case({"dist": "uniform", "low": 2, "high": 2}, mean=2.0, sd=0.0,
                               quantiles={0.5: 2.0}),
    "triangular": _triangular_case(),
    "triangular-degenerate": Case({"dist": "triangular", "low": 4, "mode": 4, "high": 4},
                                  mean=4.0, sd=0.0, quantiles={0.5: 4.0}),
    "exponential-mean": _exponential_case({"dist": "exponential", "mean": 30}, 30.0),
    "exponential-median": _exponential_case({"dist": "exponential", "median": 21}, 21 / LN2),
    "lognormal-median-p90": _lognormal_case(
        {"dist": "lognormal", "median": 14, "p90": 21}, math.log(14), LN_SIGMA_Q),
    "lognormal-mean-sd": _lognormal_case(
        {"dist": "lognormal", "mean": 14, "sd": 3}, math.log(14) - LN_SIGMA2_M / 2,
        math.sqrt(LN_SIGMA2_M)),
    "gamma": Case({"dist": "gamma", "mean": 14, "sd": 3}, mean=14.0, sd=3.0, quantiles={}),
    "gamma-erlang": _erlang_case(),
    "weibull-scale": _weibull_case({"dist": "weibull", "shape": 1.3, "scale": 200}, 1.3, 200.0),
    "weibull-median": _weibull_case({"dist": "weibull", "shape": 1.3, "median": 150}, 1.3,
                                    WEIBULL_MEDIAN_SCALE),
    "weibull-heavy": _weibull_case({"dist": "weibull", "shape": 0.56, "median": 365}, 0.56,
                                   365 / LN2 ** (1 / 0.56)),
}


def sample(spec: DistributionSpec, n: int = N) -> np.ndarray:
    return spec.sample(np.random.default_rng(FIXED_SEED), n)


def binomial_se(p: float, n: int = N) -> float:
    return math.sqrt(p * (1 - p) / n)


# --------------------------------------------------------------------------- closed forms


def test_hand_worked_values_are_what_the_spec_table_means() -> None:
    """Spot checks of the closed forms above, worked on paper."""
    assert CASES["exponential-median"].mean == pytest.approx(30.296, abs=1e-3)  # 21 / ln 2
    assert CASES["lognormal-median-p90"].quantiles[0.9] == pytest.approx(21.0)
    assert LN_SIGMA_Q == pytest.approx(0.31638, abs=1e-5)  # ln 1.5 / 1.2816
    assert CASES["weibull-median"].quantiles[0.5] == pytest.approx(150.0)
    assert CASES["weibull-scale"].mean == pytest.approx(200 * 0.92358, rel=1e-4)  # G(1+1/1.3)
    assert CASES["triangular"].quantiles[0.9] == pytest.approx(10 - math.sqrt(3.5))


@pytest.mark.parametrize("name", list(CASES))
def test_mean_method_matches_closed_form(name: str) -> None:
    case = CASES[name]
    assert parse(case.data).mean() == pytest.approx(case.mean, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("name", [n for n in CASES if CASES[n].quantiles])
def test_ppf_at_fixed_probabilities_matches_closed_form(name: str) -> None:
    case = CASES[name]
    spec = parse(case.data)
    probs = np.array(list(case.quantiles))
    expected = np.array(list(case.quantiles.values()))
    np.testing.assert_allclose(spec.ppf(probs), expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", list(CASES))
def test_sample_mean_and_sd(name: str) -> None:
    case = CASES[name]
    x = sample(parse(case.data))
    assert x.shape == (N,)
    if case.sd == 0:
        assert np.all(x == case.mean)
        return
    se = x.std(ddof=1) / math.sqrt(N)
    assert abs(x.mean() - case.mean) < 5 * se, (x.mean(), case.mean, se)
    # The sd of a sample of 200,000 is within a few per cent even for the heavy Weibull.
    assert x.std(ddof=1) == pytest.approx(case.sd, rel=0.03)


@pytest.mark.parametrize("name", [n for n in CASES if CASES[n].quantiles and CASES[n].sd > 0])
def test_sample_quantiles(name: str) -> None:
    case = CASES[name]
    x = sample(parse(case.data))
    for p, q in case.quantiles.items():
        # In probability space: the share of draws below the analytic quantile is p.
        assert abs(np.mean(x <= q) - p) < 5 * binomial_se(p), (p, q)
        # In value space: the sample quantile is within 1% of the analytic one.
        assert np.quantile(x, p) == pytest.approx(q, rel=0.01), p


@pytest.mark.parametrize("name", [n for n in CASES if CASES[n].cdf is not None])
def test_empirical_cdf_matches_analytic_cdf(name: str) -> None:
    case = CASES[name]
    assert case.cdf is not None
    x = sample(parse(case.data))
    for point in case.cdf_points:
        p = case.cdf(point)
        assert 0 < p < 1
        assert abs(np.mean(x <= point) - p) < 5 * binomial_se(p), (point, p)


def test_gamma_mean_and_sd_parameterisation() -> None:
    """mean 14, sd 3: shape (14/3)^2 = 21.78, scale 9/14; the median of a gamma lies between
    mean - 1/3 and the mean for shape > 1 (Chen and Rubin 1986)."""
    x = sample(parse({"dist": "gamma", "mean": 14, "sd": 3}))
    median = float(np.median(x))
    assert 14 - 1 / 3 - 0.02 < median < 14
    # Third standardised moment of a gamma is 2 / sqrt(shape) = 2 * 3 / 14.
    skew = np.mean((x - x.mean()) ** 3) / x.std() ** 3
    assert skew == pytest.approx(6 / 14, abs=0.03)


def test_lognormal_median_p90_uses_scipys_normal_quantile_to_the_last_bit() -> None:
    """The module writes Phi^-1(0.9) out (so loading a scenario need not import scipy.stats);
    it must be the very double that scipy.stats.norm.ppf(0.9) gives, so no number moves."""
    from scipy import stats

    from v2vsim.scenario import distributions

    assert distributions._Z90 == float(stats.norm.ppf(0.9))
    spec = parse({"dist": "lognormal", "median": 14, "p90": 21})
    assert spec.mu_sigma[1] == (math.log(21) - math.log(14)) / float(stats.norm.ppf(0.9))


def test_lognormal_mean_sd_has_the_asked_moments() -> None:
    spec = parse({"dist": "lognormal", "mean": 14, "sd": 3})
    x = sample(spec)
    assert x.mean() == pytest.approx(14, rel=0.005)
    assert x.std() == pytest.approx(3, rel=0.02)


# --------------------------------------------------------------------------- empirical


@pytest.mark.parametrize(
    ("data", "probs"),
    [
        ({"dist": "empirical", "values": [12, 13, 15, 21], "weights": [1, 2, 2, 1]},
         {12: 1 / 6, 13: 2 / 6, 15: 2 / 6, 21: 1 / 6}),
        ({"dist": "empirical", "values": [12, 13, 15, 21]},
         {12: 0.25, 13: 0.25, 15: 0.25, 21: 0.25}),
        # unsorted values, a repeated value and a zero weight
        ({"dist": "empirical", "values": [21, 12, 7, 12], "weights": [1, 1, 0, 2]},
         {12: 3 / 4, 21: 1 / 4}),
    ],
    ids=["weighted", "unweighted", "unsorted-repeated-zero-weight"],
)
def test_empirical_exact_probabilities(data: dict[str, Any], probs: dict[float, float]) -> None:
    spec = parse(data)
    mean = sum(v * p for v, p in probs.items())
    assert spec.mean() == pytest.approx(mean, rel=1e-12)
    x = sample(spec)
    assert set(np.unique(x)) == set(probs)  # a value with weight 0 is never drawn
    for value, p in probs.items():
        assert abs(np.mean(x == value) - p) < 5 * binomial_se(p), value
    assert abs(x.mean() - mean) < 5 * x.std() / math.sqrt(N)


def test_empirical_ppf_steps_at_cumulative_weights() -> None:
    spec = parse({"dist": "empirical", "values": [12, 13, 15, 21], "weights": [1, 2, 2, 1]})
    # cumulative probabilities 1/6, 1/2, 5/6, 1
    u = np.array([0.0, 0.16, 0.17, 0.49, 0.51, 0.83, 0.84, 0.999999])
    np.testing.assert_array_equal(spec.ppf(u), [12, 12, 13, 13, 15, 15, 21, 21])


# --------------------------------------------------------------------------- never


@pytest.mark.parametrize("data", ["never"])
def test_never(data: str) -> None:
    spec = parse(data)
    assert spec.is_never
    assert spec.mean() == math.inf
    x = sample(spec, 1000)
    assert np.all(np.isposinf(x))
    assert spec.to_yaml() == "never"


def test_only_never_is_never() -> None:
    assert not parse(5).is_never
    assert not parse({"dist": "exponential", "mean": 1}).is_never


# --------------------------------------------------------------------------- invariants

ALL_FORMS = [c.data for c in CASES.values()] + [
    {"dist": "empirical", "values": [12, 13, 15, 21], "weights": [1, 2, 2, 1]},
    {"dist": "empirical", "values": [21, 12, 7, 12], "weights": [1, 1, 0, 2]},
    {"dist": "empirical", "values": [3]},
    "never",
]


@pytest.mark.parametrize("data", ALL_FORMS, ids=lambda d: str(d))
def test_ppf_is_monotone_non_decreasing(data: Any) -> None:
    """Needed by common random numbers: a larger uniform never gives a shorter time."""
    spec = parse(data)
    u = np.concatenate([
        np.linspace(0.0, 1.0, 20_001)[:-1],
        [1e-300, 1e-12, 1 - 1e-9, 1 - 1e-15, np.nextafter(1.0, 0.0)],
        np.random.default_rng(FIXED_SEED).random(5_000),
    ])
    u.sort()
    y = spec.ppf(u)
    assert y.shape == u.shape
    assert not np.any(np.isnan(y))
    assert np.all(y[1:] >= y[:-1])


@pytest.mark.parametrize("data", ALL_FORMS, ids=lambda d: str(d))
def test_samples_are_non_negative(data: Any) -> None:
    spec = parse(data)
    x = sample(spec, 50_000)
    ends = spec.ppf(np.array([0.0, np.nextafter(1.0, 0.0)]))
    for values in (x, ends):
        assert not np.any(np.isnan(values))
        assert np.all(values >= 0)
    if not spec.is_never:
        assert np.all(np.isfinite(x))


@pytest.mark.parametrize("data", ALL_FORMS, ids=lambda d: str(d))
def test_to_yaml_round_trips(data: Any) -> None:
    spec = parse(data)
    assert parse(spec.to_yaml()) == spec


def test_same_seed_same_draws() -> None:
    spec = parse({"dist": "lognormal", "median": 14, "p90": 21})
    np.testing.assert_array_equal(sample(spec, 100), sample(spec, 100))


# --------------------------------------------------------------------------- rejections

REJECTED: dict[str, Any] = {
    # impossible parameters
    "exponential-negative-mean": {"dist": "exponential", "mean": -3},
    "exponential-zero-median": {"dist": "exponential", "median": 0},
    "exponential-mean-and-median": {"dist": "exponential", "mean": 3, "median": 2},
    "exponential-neither": {"dist": "exponential"},
    "uniform-low-above-high": {"dist": "uniform", "low": 7, "high": 3},
    "uniform-negative-low": {"dist": "uniform", "low": -1, "high": 3},
    "uniform-missing-high": {"dist": "uniform", "low": 1},
    "triangular-mode-above-high": {"dist": "triangular", "low": 3, "mode": 11, "high": 10},
    "triangular-mode-below-low": {"dist": "triangular", "low": 3, "mode": 2, "high": 10},
    "triangular-low-above-high": {"dist": "triangular", "low": 10, "mode": 5, "high": 3},
    "lognormal-p90-below-median": {"dist": "lognormal", "median": 14, "p90": 10},
    "lognormal-p90-equals-median": {"dist": "lognormal", "median": 14, "p90": 14},
    "lognormal-median-only": {"dist": "lognormal", "median": 14},
    "lognormal-mean-only": {"dist": "lognormal", "mean": 14},
    "lognormal-median-and-sd": {"dist": "lognormal", "median": 14, "sd": 3},
    "lognormal-all-four": {"dist": "lognormal", "median": 14, "p90": 21, "mean": 14, "sd": 3},
    "lognormal-neither": {"dist": "lognormal"},
    "lognormal-negative-sd": {"dist": "lognormal", "mean": 14, "sd": -3},
    "gamma-negative-mean": {"dist": "gamma", "mean": -14, "sd": 3},
    "gamma-zero-sd": {"dist": "gamma", "mean": 14, "sd": 0},
    "gamma-missing-sd": {"dist": "gamma", "mean": 14},
    "weibull-zero-shape": {"dist": "weibull", "shape": 0, "scale": 200},
    "weibull-scale-and-median": {"dist": "weibull", "shape": 1.3, "scale": 200, "median": 150},
    "weibull-neither": {"dist": "weibull", "shape": 1.3},
    "weibull-missing-shape": {"dist": "weibull", "scale": 200},
    "fixed-negative": {"dist": "fixed", "value": -1},
    "fixed-missing-value": {"dist": "fixed"},
    "empirical-weights-length": {"dist": "empirical", "values": [1, 2, 3], "weights": [1, 2]},
    "empirical-weights-zero-sum": {"dist": "empirical", "values": [1, 2], "weights": [0, 0]},
    "empirical-negative-weight": {"dist": "empirical", "values": [1, 2], "weights": [2, -1]},
    "empirical-negative-value": {"dist": "empirical", "values": [-1, 2]},
    "empirical-no-values": {"dist": "empirical", "values": []},
    "empirical-values-missing": {"dist": "empirical", "weights": [1]},
    # shape of the data
    "unknown-dist": {"dist": "normal", "mean": 3, "sd": 1},
    "no-dist": {"mean": 3},
    "dist-not-a-string": {"dist": 5},
    "extra-key-fixed": {"dist": "fixed", "value": 5, "extra": 1},
    "extra-key-uniform": {"dist": "uniform", "low": 1, "high": 2, "mode": 1.5},
    "field-name-not-alias": {"dist": "exponential", "mean_": 3},
    "field-name-not-alias-weibull": {"dist": "weibull", "shape": 1, "scale_": 3},
    "true": True,
    "false": False,
    "bool-parameter": {"dist": "uniform", "low": True, "high": 3},
    "bool-value": {"dist": "fixed", "value": True},
    "bool-weight": {"dist": "empirical", "values": [1, 2], "weights": [True, 1]},
    "string-number": "5",
    "string-word": "soon",
    "string-Never": "Never",
    "string-empty": "",
    "negative-number": -1,
    "negative-float": -0.5,
    "nan": math.nan,
    "inf": math.inf,
    "minus-inf": -math.inf,
    "nan-parameter": {"dist": "exponential", "mean": math.nan},
    "inf-parameter": {"dist": "uniform", "low": 0, "high": math.inf},
    "nan-value": {"dist": "empirical", "values": [1, math.nan]},
    "none": None,
    "list": [1, 2],
}


@pytest.mark.parametrize("data", list(REJECTED.values()), ids=list(REJECTED))
def test_impossible_or_malformed_rejected(data: Any) -> None:
    with pytest.raises(ValidationError):
        parse(data)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"dist": "uniform", "low": 7, "high": 3}, "low (7) must not exceed high (3)"),
        ({"dist": "lognormal", "median": 14, "p90": 10}, "p90 (10) must exceed median (14)"),
        ({"dist": "triangular", "low": 3, "mode": 11, "high": 10}, "low <= mode <= high"),
        ({"dist": "exponential", "mean": 3, "median": 2}, "exactly one of mean, median"),
        ({"dist": "empirical", "values": [1, 2, 3], "weights": [1, 2]},
         "weights has 2 entries but values has 3"),
        ({"dist": "empirical", "values": [1, 2], "weights": [0, 0]}, "sum to a positive"),
        ({"dist": "normal"}, "expected a number or {dist: fixed|uniform"),
        (True, "expected a number"),
        ({"dist": "uniform", "low": True, "high": 3}, "must be a number, not true"),
    ],
)
def test_rejection_messages_say_what_is_wrong(data: Any, fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse(data)
    assert fragment in str(info.value)


def test_valid_edge_values_accepted() -> None:
    """Boundaries that the contract allows: zero, low == high, mode at an end."""
    assert parse(0).mean() == 0
    assert parse({"dist": "uniform", "low": 0, "high": 0}).mean() == 0
    assert parse({"dist": "triangular", "low": 3, "mode": 3, "high": 10}).mean() == \
        pytest.approx(16 / 3)
    assert parse({"dist": "triangular", "low": 3, "mode": 10, "high": 10}).mean() == \
        pytest.approx(23 / 3)
    assert parse({"dist": "empirical", "values": [0, 5], "weights": [0, 1]}).mean() == 5
