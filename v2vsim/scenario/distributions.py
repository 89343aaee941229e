"""Distribution specs (pydantic) and their samplers.

Every distribution is sampled by inversion: a uniform from a named stream goes through the
inverse CDF. With common random numbers this keeps patient *i* at the same quantile of a
step's duration in two scenarios even when the two scenarios use different distributions
(strong synchronisation), and it makes sampling a vectorised operation on blocks.

For disease clocks whose hazard changes over time (bridging therapy), every distribution also
has its cumulative hazard ``H(t) = -log S(t)`` and the inverse ``H^-1(e) = inf{t: H(t) >= e}``:
a clock drawn as ``ppf(u)`` is the time at which the cumulative hazard reaches the budget
``E = -log(1 - u)``, so ``H^-1(E) == ppf(u)`` and the budget can be consumed at a modified rate.

The module is one piece: each family's parameters, their bounds (refused with the reason the
bound is where it is: a float overflows, or a sample can no longer estimate the mean) and the
arithmetic those bounds protect (``ppf``, ``sf``, the cumulative hazard) sit side by side,
because a bound is only right for the arithmetic next to it.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag, model_validator

from .values import no_bool, quoted_number

__all__ = [
    "Distribution",
    "DistributionSpec",
    "Fixed",
    "Uniform",
    "Triangular",
    "Exponential",
    "Lognormal",
    "Gamma",
    "Weibull",
    "Empirical",
    "Never",
    "not_never",
    "DIST_NAMES",
    "no_bool",
    "BOUND_REASONS",
    "MAX_PARAMETER",
]


class _SciPySpecial:  # scipy.special, imported on first use: loading a scenario never needs it
    def __getattr__(self, name: str) -> Any:  # a function once looked up is kept: calls cost the same
        return self.__dict__.setdefault(name, getattr(__import__("scipy.special", fromlist=[name]), name))


special = _SciPySpecial()
_Z90 = 1.2815515655446004  # Phi^-1(0.9): scipy.stats.norm.ppf(0.9) to the last bit (a test checks)


#: Largest value of a distribution's parameter (days, or years for an age): 2.7 billion years,
#: far beyond any run (a run lasts at most 292,000 days), and as far as an uncertain input
#: without an upper limit is checked to reach (1e12); an event that does not happen is
#: ``never``. Below this every family's mean, quantiles and draws are finite floats (however
#: small a positive scale: hazards far past it are ``inf``, survival 0).
MAX_PARAMETER = 1e12
#: Weibull shapes allowed: below 0.01 the mean exceeds 9e157 times the scale (Gamma(1 + 1/k)
#: overflows a float at k = 0.0058); above 100 a Weibull is a fixed value to within 1%.
WEIBULL_SHAPE = (0.01, 100.0)
#: Gamma coefficient of variation (sd / mean) allowed: above 100 (shape below 1e-4) nearly every
#: draw is 0 and the mean sits in a tail no sample reaches; below 1e-4 it is a fixed value.
GAMMA_CV = (1e-4, 100.0)
#: Largest lognormal sigma: above 10 (p90 more than 370,000 times the median) the mean is more
#: than e^50 times the median and no sample of a run estimates it.
LOGNORMAL_SIGMA = 10.0
#: Smallest lognormal sigma: below it the distribution is a fixed value (and at 0 in floating
#: point its quantiles are undefined).
LOGNORMAL_MIN_SIGMA = 1e-6

#: Why a bound of a distribution's parameter is where it is (shown with the bound).
BOUND_REASONS = {
    MAX_PARAMETER: "days: 2.7 billion years, far beyond any run; write never for an event that "
                   "does not happen",
    WEIBULL_SHAPE[0]: "below 0.01 the mean exceeds 9e157 times the scale",
    WEIBULL_SHAPE[1]: "above 100 a Weibull is a fixed value to about 1%: write the value",
}

Positive = Annotated[float, BeforeValidator(no_bool), Field(gt=0, le=MAX_PARAMETER, allow_inf_nan=False)]
NonNegative = Annotated[float, BeforeValidator(no_bool), Field(ge=0, le=MAX_PARAMETER, allow_inf_nan=False)]
Weight = Annotated[float, BeforeValidator(no_bool), Field(ge=0, allow_inf_nan=False)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

    def ppf(self, u: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        """Inverse CDF applied to uniforms in (0, 1)."""
        raise NotImplementedError

    def mean(self) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def sf(self, t: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        """Survival function P(X > t)."""
        raise NotImplementedError

    def isf(self, q: np.ndarray) -> np.ndarray:
        """Inverse survival function: the ``t`` with P(X > t) = q (``ppf(1 - q)``; a ``q`` below
        1e-16 rounds to ``ppf(1)``, the top of the support: ``inf`` for an unbounded family)."""
        with np.errstate(divide="ignore"):
            return self.ppf(1.0 - np.asarray(q, dtype=float))

    def cumhaz(self, t: np.ndarray) -> np.ndarray:
        """Cumulative hazard ``H(t) = -log S(t)`` (``inf`` past the support)."""
        with np.errstate(divide="ignore"):
            return -np.log(self.sf(np.asarray(t, dtype=float)))

    def cumhaz_inv(self, e: np.ndarray) -> np.ndarray:
        """Inverse cumulative hazard: the time at which ``H`` reaches ``e``."""
        return self.isf(np.exp(-np.asarray(e, dtype=float)))

    def sample(self, gen: np.random.Generator, size: int) -> np.ndarray:
        """Draw ``size`` values from ``gen`` by inversion."""
        return self.ppf(gen.random(size))

    def to_yaml(self) -> Any:
        """The fully resolved form written to ``scenario.yaml``."""
        return self.model_dump(exclude_none=True)

    @property
    def is_never(self) -> bool:
        return False


class Fixed(_Spec):
    """A fixed value: ``5`` or ``{dist: fixed, value: 5}``."""

    dist: Literal["fixed"] = "fixed"
    value: NonNegative

    def ppf(self, u: np.ndarray) -> np.ndarray:
        return np.full(np.shape(u), self.value, dtype=float)

    def mean(self) -> float:
        return self.value

    def sf(self, t: np.ndarray) -> np.ndarray:
        return np.where(np.asarray(t, dtype=float) < self.value, 1.0, 0.0)


class Never(_Spec):
    """The event never happens (clocks only)."""

    dist: Literal["never"] = "never"

    def ppf(self, u: np.ndarray) -> np.ndarray:
        return np.full(np.shape(u), math.inf)

    def mean(self) -> float:
        return math.inf

    def sf(self, t: np.ndarray) -> np.ndarray:
        return np.ones(np.shape(t))

    def cumhaz(self, t: np.ndarray) -> np.ndarray:
        return np.zeros(np.shape(t))

    def cumhaz_inv(self, e: np.ndarray) -> np.ndarray:
        return np.full(np.shape(e), math.inf)

    def to_yaml(self) -> Any:
        return "never"

    @property
    def is_never(self) -> bool:
        return True


class Uniform(_Spec):
    dist: Literal["uniform"]
    low: NonNegative
    high: NonNegative

    @model_validator(mode="after")
    def _check(self) -> "Uniform":
        if self.low > self.high:
            raise ValueError(f"low ({self.low:g}) must not exceed high ({self.high:g})")
        return self

    def ppf(self, u: np.ndarray) -> np.ndarray:
        return self.low + (self.high - self.low) * np.asarray(u, dtype=float)

    def mean(self) -> float:
        return (self.low + self.high) / 2

    def sf(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=float)
        if self.high == self.low:
            return np.where(t < self.low, 1.0, 0.0)
        return np.clip((self.high - t) / (self.high - self.low), 0.0, 1.0)

    def isf(self, q: np.ndarray) -> np.ndarray:
        return self.high - (self.high - self.low) * np.asarray(q, dtype=float)


class Triangular(_Spec):
    dist: Literal["triangular"]
    low: NonNegative
    mode: NonNegative
    high: NonNegative

    @model_validator(mode="after")
    def _check(self) -> "Triangular":
        if not self.low <= self.mode <= self.high:
            raise ValueError(
                f"need low <= mode <= high, got {self.low:g}, {self.mode:g}, {self.high:g}"
            )
        return self

    def ppf(self, u: np.ndarray) -> np.ndarray:
        u = np.asarray(u, dtype=float)
        a, c, b = self.low, self.mode, self.high
        if b == a:
            return np.full(u.shape, a)
        fc = (c - a) / (b - a)
        left = a + np.sqrt(u * (b - a) * (c - a))
        right = b - np.sqrt((1 - u) * (b - a) * (b - c))
        return np.where(u < fc, left, right)

    def mean(self) -> float:
        return (self.low + self.mode + self.high) / 3

    def sf(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=float)
        a, c, b = self.low, self.mode, self.high
        if b == a:
            return np.where(t < a, 1.0, 0.0)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            left = 1.0 - (t - a) ** 2 / ((b - a) * (c - a))
            right = (b - t) ** 2 / ((b - a) * (b - c))
        return np.where(t <= a, 1.0, np.where(t >= b, 0.0, np.where(t < c, left, right)))

    def isf(self, q: np.ndarray) -> np.ndarray:
        # The upper branch straight from q keeps precision in the right tail.
        q = np.asarray(q, dtype=float)
        a, c, b = self.low, self.mode, self.high
        if b == a:
            return np.full(q.shape, a)
        right = b - np.sqrt(q * (b - a) * (b - c))
        return np.where(1.0 - q < (c - a) / (b - a), self.ppf(1.0 - q), right)


class Exponential(_Spec):
    """``{dist: exponential, mean: 30}`` or ``{dist: exponential, median: 21}``."""

    dist: Literal["exponential"]
    mean_: Positive | None = Field(default=None, alias="mean")
    median: Positive | None = None

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="after")
    def _check(self) -> "Exponential":
        if (self.mean_ is None) == (self.median is None):
            raise ValueError("give exactly one of mean, median")
        return self

    @property
    def scale(self) -> float:
        return self.mean_ if self.mean_ is not None else self.median / math.log(2)

    def ppf(self, u: np.ndarray) -> np.ndarray:
        return -self.scale * np.log1p(-np.asarray(u, dtype=float))

    def mean(self) -> float:
        return self.scale

    def sf(self, t: np.ndarray) -> np.ndarray:
        return np.exp(-self.cumhaz(t))

    def cumhaz(self, t: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):  # a tiny scale: inf far past it (survival 0)
            return np.maximum(np.asarray(t, dtype=float), 0.0) / self.scale

    def cumhaz_inv(self, e: np.ndarray) -> np.ndarray:
        return np.asarray(e, dtype=float) * self.scale

    def to_yaml(self) -> Any:
        return self.model_dump(exclude_none=True, by_alias=True)


class Lognormal(_Spec):
    """``{median, p90}`` or ``{mean, sd}``."""

    dist: Literal["lognormal"]
    median: Positive | None = None
    p90: Positive | None = None
    mean_: Positive | None = Field(default=None, alias="mean")
    sd: Positive | None = None

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="after")
    def _check(self) -> "Lognormal":
        pair_q = self.median is not None or self.p90 is not None
        pair_m = self.mean_ is not None or self.sd is not None
        if pair_q == pair_m:
            raise ValueError("give either median and p90, or mean and sd")
        if pair_q:
            if self.median is None or self.p90 is None:
                raise ValueError("give both median and p90")
            if self.p90 <= self.median:
                raise ValueError(f"p90 ({self.p90:g}) must exceed median ({self.median:g})")
        elif self.mean_ is None or self.sd is None:
            raise ValueError("give both mean and sd")
        sigma = self.mu_sigma[1]
        if sigma < LOGNORMAL_MIN_SIGMA:
            raise ValueError(f"sigma {sigma:.3g} is below {LOGNORMAL_MIN_SIGMA:g}: the spread is so small "
                             "that the distribution is a fixed value; write the median")
        if sigma > LOGNORMAL_SIGMA:
            raise ValueError(f"sigma {sigma:.3g} is above {LOGNORMAL_SIGMA:g}: p90 at most "
                             f"{math.exp(LOGNORMAL_SIGMA * _Z90):,.0f} times the median (beyond that "
                             "the mean is more than e^50 times the median and no sample estimates it)")
        return self

    @property
    def mu_sigma(self) -> tuple[float, float]:
        if self.median is not None:
            sigma = (math.log(self.p90) - math.log(self.median)) / _Z90
            return math.log(self.median), sigma
        cv = self.sd / self.mean_
        # log(1 + cv^2) without squaring a cv beyond 1e154 (refused as sigma > 10 anyway)
        sigma2 = math.log1p(cv**2) if cv < 1e150 else 2 * math.log(cv)
        return math.log(self.mean_) - sigma2 / 2, math.sqrt(sigma2)

    def ppf(self, u: np.ndarray) -> np.ndarray:
        mu, sigma = self.mu_sigma
        return np.exp(mu + sigma * special.ndtri(np.asarray(u, dtype=float)))

    def mean(self) -> float:
        mu, sigma = self.mu_sigma
        return math.exp(mu + sigma**2 / 2)

    def _z(self, t: np.ndarray) -> np.ndarray:
        mu, sigma = self.mu_sigma
        t = np.asarray(t, dtype=float)
        with np.errstate(divide="ignore"):
            return (np.log(np.maximum(t, 0.0)) - mu) / sigma

    def sf(self, t: np.ndarray) -> np.ndarray:
        return special.ndtr(-self._z(t))

    def cumhaz(self, t: np.ndarray) -> np.ndarray:
        return -special.log_ndtr(-self._z(t))  # log space: exact far into the tail

    def isf(self, q: np.ndarray) -> np.ndarray:
        mu, sigma = self.mu_sigma
        return np.exp(mu - sigma * special.ndtri(np.asarray(q, dtype=float)))

    def to_yaml(self) -> Any:
        return self.model_dump(exclude_none=True, by_alias=True)


class Gamma(_Spec):
    dist: Literal["gamma"]
    mean_: Positive = Field(alias="mean")
    sd: Positive

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="after")
    def _check(self) -> "Gamma":
        cv = self.sd / self.mean_
        low, high = GAMMA_CV
        if not low <= cv <= high:
            raise ValueError(
                f"sd / mean is {cv:.3g}; it must be between {low:g} and {high:g} (shape "
                f"(mean/sd)^2 from {high ** -2:g} to {low ** -2:g}): " + (
                    "above 100 nearly every draw is 0 and the mean sits in a tail no sample reaches"
                    if cv > high else "below 1e-4 it is a fixed value: write the mean"))
        return self

    @property
    def shape(self) -> float:
        return (self.mean_ / self.sd) ** 2

    @property
    def scale(self) -> float:
        return self.mean_ * (self.sd / self.mean_) ** 2  # sd^2 / mean without squaring sd alone

    def ppf(self, u: np.ndarray) -> np.ndarray:
        return self.scale * special.gammaincinv(self.shape, np.asarray(u, dtype=float))

    def mean(self) -> float:
        return self.mean_

    def sf(self, t: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            return special.gammaincc(self.shape, np.maximum(np.asarray(t, dtype=float), 0.0) / self.scale)

    def isf(self, q: np.ndarray) -> np.ndarray:
        return self.scale * special.gammainccinv(self.shape, np.asarray(q, dtype=float))

    def to_yaml(self) -> Any:
        return self.model_dump(exclude_none=True, by_alias=True)


class Weibull(_Spec):
    """``{shape, scale}`` or ``{shape, median}``."""

    dist: Literal["weibull"]
    shape: Annotated[float, BeforeValidator(no_bool),
                     Field(ge=WEIBULL_SHAPE[0], le=WEIBULL_SHAPE[1], allow_inf_nan=False)]
    scale_: Positive | None = Field(default=None, alias="scale")
    median: Positive | None = None

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="after")
    def _check(self) -> "Weibull":
        if (self.scale_ is None) == (self.median is None):
            raise ValueError("give exactly one of scale, median")
        return self

    @property
    def scale(self) -> float:
        if self.scale_ is not None:
            return self.scale_
        return self.median / math.log(2) ** (1 / self.shape)

    def ppf(self, u: np.ndarray) -> np.ndarray:
        return self.scale * (-np.log1p(-np.asarray(u, dtype=float))) ** (1 / self.shape)

    def mean(self) -> float:
        return self.scale * math.gamma(1 + 1 / self.shape)

    def sf(self, t: np.ndarray) -> np.ndarray:
        return np.exp(-self.cumhaz(t))

    def cumhaz(self, t: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):  # far past the scale with a large shape: inf, S(t) = 0
            return (np.maximum(np.asarray(t, dtype=float), 0.0) / self.scale) ** self.shape

    def cumhaz_inv(self, e: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            return self.scale * np.asarray(e, dtype=float) ** (1 / self.shape)

    def to_yaml(self) -> Any:
        return self.model_dump(exclude_none=True, by_alias=True)


class Empirical(_Spec):
    """Resampling of observed values, optionally weighted."""

    dist: Literal["empirical"]
    values: list[NonNegative] = Field(min_length=1)
    weights: list[Weight] | None = None

    @model_validator(mode="after")
    def _check(self) -> "Empirical":
        if self.weights is not None:
            if len(self.weights) != len(self.values):
                raise ValueError(
                    f"weights has {len(self.weights)} entries but values has {len(self.values)}"
                )
            if not sum(self.weights) > 0:
                raise ValueError("weights must sum to a positive number")
        return self

    def _table(self) -> tuple[np.ndarray, np.ndarray]:
        values = np.asarray(self.values, dtype=float)
        weights = np.ones_like(values) if self.weights is None else np.asarray(self.weights, dtype=float)
        weights = weights / weights.max()  # the sum of weights near the float limit stays finite
        # Sorting makes the inverse CDF monotone, so common random numbers stay aligned.
        order = np.argsort(values, kind="stable")
        cum = np.cumsum(weights[order])
        return values[order], cum / cum[-1]

    def ppf(self, u: np.ndarray) -> np.ndarray:
        values, cum = self._table()
        idx = np.searchsorted(cum, np.asarray(u, dtype=float), side="right")
        return values[np.minimum(idx, values.size - 1)]

    def mean(self) -> float:
        values, cum = self._table()
        probs = np.diff(np.concatenate(([0.0], cum)))
        return float(values @ probs)

    def sf(self, t: np.ndarray) -> np.ndarray:
        values, cum = self._table()
        # P(X > t) = 1 - (cumulative weight of the values <= t)
        k = np.searchsorted(values, np.asarray(t, dtype=float), side="right")
        below = np.concatenate(([0.0], cum))[k]
        return np.maximum(1.0 - below, 0.0)


DIST_NAMES = ("fixed", "uniform", "triangular", "exponential", "lognormal", "gamma", "weibull",
              "empirical")


def _tag(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) or quoted_number(value):
        return "number"  # a quoted number is refused as one: "write 2 without quotes"
    if value == "never":
        return "never"
    if isinstance(value, dict):
        dist = value.get("dist")
        return dist if dist in DIST_NAMES else None
    if isinstance(value, _Spec):
        return "never" if isinstance(value, Never) else value.dist
    return None


class _Number(_Spec):
    """A bare number is a fixed value."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_after_validator_function(
            lambda v: Fixed(value=v),
            core_schema.no_info_before_validator_function(
                no_bool, core_schema.float_schema(ge=0, le=MAX_PARAMETER, allow_inf_nan=False)),
        )


class _NeverWord(_Spec):
    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_after_validator_function(
            lambda v: Never(), core_schema.literal_schema(["never"])
        )


Distribution = Annotated[
    Union[
        Annotated[_Number, Tag("number")],
        Annotated[_NeverWord, Tag("never")],
        Annotated[Fixed, Tag("fixed")],
        Annotated[Uniform, Tag("uniform")],
        Annotated[Triangular, Tag("triangular")],
        Annotated[Exponential, Tag("exponential")],
        Annotated[Lognormal, Tag("lognormal")],
        Annotated[Gamma, Tag("gamma")],
        Annotated[Weibull, Tag("weibull")],
        Annotated[Empirical, Tag("empirical")],
    ],
    Discriminator(
        _tag,
        custom_error_type="distribution",
        custom_error_message=(
            "expected a number or {dist: fixed|uniform|triangular|exponential|lognormal|gamma|"
            "weibull|empirical, ...}"
        ),
    ),
]
"""Any distribution form of the scenario contract (``never`` included; fields that must not
accept ``never`` check it themselves)."""

DistributionSpec = _Spec


def not_never(value: DistributionSpec) -> DistributionSpec:
    """A field validator: ``never`` is refused (it is only for disease clocks and survival)."""
    if isinstance(value, Never):
        raise ValueError("'never' is only allowed for disease clocks")
    return value
