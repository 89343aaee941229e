"""Uncertain inputs of a scenario, for probabilistic sensitivity analysis (``v2vsim psa``).

A scenario may list, under ``uncertain:``, scenario values whose true value is not known, each
with a distribution *for the value itself* (not for patients: a beta for a failure probability,
a gamma for a cost, a lognormal for a hazard ratio)::

    uncertain:
      - path: pathways.local.steps.manufacture.failure_probability   # same syntax as --set
        name: local_failure                                           # optional label
        distribution: {beta: {mean: 0.05, sd: 0.02}}
      - path: economics.costs.icu
        distribution: {gamma: {mean: 250000, sd: 60000}}
        bounds: [0, 1000000]                                          # optional truncation

Each value is drawn by inversion (``ppf(u)`` of a uniform ``u``), so the PSA can read parameter
set *k* of every parameter from its own stream by index (:mod:`v2vsim.experiments.psa`).
``bounds`` truncate a distribution: ``u`` is mapped into ``[F(low), F(high)]`` before the
inversion, so the draws stay inside and keep the distribution's shape there.

This module holds the contract and the sampling only. Whether a path exists in the scenario and
whether every possible draw is a value the parameter allows are checked against the scenario's
variants by :func:`v2vsim.scenario.uncertain_checks.uncertain_problems` (they need the file's overrides,
which are built on the schema that holds this list).
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from .distributions import special
from .values import NAME_PATTERN, no_bool

__all__ = ["Uncertain", "UncertainDistribution", "DISTRIBUTION_NAMES"]

_Z95 = 1.959963984540054  # Phi^-1(0.975)

Number = Annotated[float, BeforeValidator(no_bool), Field(allow_inf_nan=False)]
PositiveNumber = Annotated[float, BeforeValidator(no_bool), Field(gt=0, allow_inf_nan=False)]

#: The distributions an uncertain value may have, as written under ``distribution:``.
DISTRIBUTION_NAMES = ("beta", "gamma", "lognormal", "normal", "uniform", "fixed")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BetaSpec(_Model):
    """A beta on (0, 1): ``{alpha, beta}`` or ``{mean, sd}`` (method of moments)."""

    alpha: PositiveNumber | None = None
    beta: PositiveNumber | None = None
    mean: Number | None = None
    sd: Number | None = None

    @model_validator(mode="after")
    def _one_form(self) -> "BetaSpec":
        shapes = self.alpha is not None or self.beta is not None
        moments = self.mean is not None or self.sd is not None
        if shapes == moments:
            raise ValueError("give either alpha and beta, or mean and sd")
        if shapes and (self.alpha is None or self.beta is None):
            raise ValueError("give both alpha and beta")
        if moments:
            if self.mean is None or self.sd is None:
                raise ValueError("give both mean and sd")
            if not 0 < self.mean < 1:
                raise ValueError(f"a beta's mean must be between 0 and 1 (exclusive), not {self.mean:g}")
            if self.sd <= 0:
                raise ValueError(f"sd must be above 0, not {self.sd:g}")
            largest = math.sqrt(self.mean * (1 - self.mean))
            if self.sd >= largest:
                raise ValueError(f"sd {self.sd:g} is too large for a beta with mean {self.mean:g}: "
                                 f"it must be below sqrt(mean (1 - mean)) = {largest:.4g}")
        return self

    def shapes(self) -> tuple[float, float]:
        if self.alpha is not None and self.beta is not None:
            return self.alpha, self.beta
        assert self.mean is not None and self.sd is not None
        k = self.mean * (1 - self.mean) / self.sd ** 2 - 1
        return self.mean * k, (1 - self.mean) * k


class GammaSpec(_Model):
    """A gamma on (0, inf) with the given mean and sd (shape (mean/sd)^2)."""

    mean: PositiveNumber
    sd: PositiveNumber


class LognormalSpec(_Model):
    """A lognormal: ``{mean, sd}`` of the value, or ``{median, ci95: [low, high]}`` (the median
    sets mu, the interval's width on the log scale sets sigma)."""

    mean: PositiveNumber | None = None
    sd: PositiveNumber | None = None
    median: PositiveNumber | None = None
    ci95: tuple[PositiveNumber, PositiveNumber] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> "LognormalSpec":
        moments = self.mean is not None or self.sd is not None
        quantiles = self.median is not None or self.ci95 is not None
        if moments == quantiles:
            raise ValueError("give either mean and sd, or median and ci95: [low, high]")
        if moments and (self.mean is None or self.sd is None):
            raise ValueError("give both mean and sd")
        if quantiles:
            if self.median is None or self.ci95 is None:
                raise ValueError("give both median and ci95: [low, high]")
            low, high = self.ci95
            if not low < self.median < high:
                raise ValueError(f"ci95 [{low:g}, {high:g}] must contain the median {self.median:g} "
                                 "strictly inside")
        return self

    def mu_sigma(self) -> tuple[float, float]:
        if self.median is not None and self.ci95 is not None:
            low, high = self.ci95
            return math.log(self.median), (math.log(high) - math.log(low)) / (2 * _Z95)
        assert self.mean is not None and self.sd is not None
        s2 = math.log1p((self.sd / self.mean) ** 2)
        return math.log(self.mean) - s2 / 2, math.sqrt(s2)


class NormalSpec(_Model):
    mean: Number
    sd: PositiveNumber


class UniformSpec(_Model):
    low: Number
    high: Number

    @model_validator(mode="after")
    def _ordered(self) -> "UniformSpec":
        if not self.low < self.high:
            raise ValueError(f"low ({self.low:g}) must be below high ({self.high:g})")
        return self


class UncertainDistribution(_Model):
    """Exactly one of the distributions, written as ``{name: {parameters}}``."""

    beta: BetaSpec | None = None
    gamma: GammaSpec | None = None
    lognormal: LognormalSpec | None = None
    normal: NormalSpec | None = None
    uniform: UniformSpec | None = None
    fixed: Any = Field(default=None, description="The value for every parameter set (any scenario value).")

    @model_validator(mode="before")
    @classmethod
    def _exactly_one(cls, data: Any) -> Any:
        if isinstance(data, dict):
            given = [k for k in data if data[k] is not None or k == "fixed"]
            if len(given) != 1:
                raise ValueError(f"give exactly one distribution ({', '.join(DISTRIBUTION_NAMES)}), "
                                 f"not {len(given) or 'none'}" + (f" ({', '.join(map(str, given))})" if given else ""))
        return data

    @property
    def name(self) -> str:
        for key in DISTRIBUTION_NAMES:
            if key == "fixed":
                return "fixed"
            if getattr(self, key) is not None:
                return key
        raise AssertionError("unreachable")

    @property
    def spec(self) -> Any:
        return self.fixed if self.name == "fixed" else getattr(self, self.name)

    # ----------------------------------------------------------------- numbers of the distribution
    def support(self) -> tuple[float, float]:
        """The interval the draws can fall in (before any ``bounds``)."""
        name = self.name
        if name == "beta":
            return 0.0, 1.0
        if name in ("gamma", "lognormal"):
            return 0.0, math.inf
        if name == "normal":
            return -math.inf, math.inf
        if name == "uniform":
            return self.uniform.low, self.uniform.high  # type: ignore[union-attr]
        value = float(self.fixed) if _is_number(self.fixed) else math.nan
        return value, value

    def cdf(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        name = self.name
        if name == "beta":
            a, b = self.beta.shapes()  # type: ignore[union-attr]
            return special.betainc(a, b, np.clip(x, 0.0, 1.0))
        if name == "gamma":
            shape, scale = self._gamma()
            return special.gammainc(shape, np.maximum(x, 0.0) / scale)
        if name == "lognormal":
            mu, sigma = self.lognormal.mu_sigma()  # type: ignore[union-attr]
            with np.errstate(divide="ignore"):
                return special.ndtr((np.log(np.maximum(x, 0.0)) - mu) / sigma)
        if name == "normal":
            return special.ndtr((x - self.normal.mean) / self.normal.sd)  # type: ignore[union-attr]
        if name == "uniform":
            lo, hi = self.support()
            return np.clip((x - lo) / (hi - lo), 0.0, 1.0)
        raise ValueError("a fixed value has no distribution function")

    def ppf(self, u: np.ndarray) -> np.ndarray:
        u = np.asarray(u, dtype=float)
        name = self.name
        if name == "beta":
            a, b = self.beta.shapes()  # type: ignore[union-attr]
            return special.betaincinv(a, b, u)
        if name == "gamma":
            shape, scale = self._gamma()
            return special.gammaincinv(shape, u) * scale
        if name == "lognormal":
            mu, sigma = self.lognormal.mu_sigma()  # type: ignore[union-attr]
            return np.exp(mu + sigma * special.ndtri(u))
        if name == "normal":
            return self.normal.mean + self.normal.sd * special.ndtri(u)  # type: ignore[union-attr]
        if name == "uniform":
            lo, hi = self.support()
            return lo + (hi - lo) * u
        raise ValueError("a fixed value has no quantile function")

    def mean(self) -> float:
        name = self.name
        if name == "beta":
            a, b = self.beta.shapes()  # type: ignore[union-attr]
            return a / (a + b)
        if name == "gamma":
            return self.gamma.mean  # type: ignore[union-attr]
        if name == "lognormal":
            mu, sigma = self.lognormal.mu_sigma()  # type: ignore[union-attr]
            return math.exp(mu + sigma ** 2 / 2)
        if name == "normal":
            return self.normal.mean  # type: ignore[union-attr]
        if name == "uniform":
            return (self.uniform.low + self.uniform.high) / 2  # type: ignore[union-attr]
        return float(self.fixed) if _is_number(self.fixed) else math.nan

    def sd(self) -> float:
        name = self.name
        if name == "beta":
            a, b = self.beta.shapes()  # type: ignore[union-attr]
            return math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
        if name == "gamma":
            return self.gamma.sd  # type: ignore[union-attr]
        if name == "lognormal":
            mu, sigma = self.lognormal.mu_sigma()  # type: ignore[union-attr]
            return math.sqrt(math.expm1(sigma ** 2)) * math.exp(mu + sigma ** 2 / 2)
        if name == "normal":
            return self.normal.sd  # type: ignore[union-attr]
        if name == "uniform":
            return (self.uniform.high - self.uniform.low) / math.sqrt(12)  # type: ignore[union-attr]
        return 0.0

    def _gamma(self) -> tuple[float, float]:
        g = self.gamma
        assert g is not None
        return (g.mean / g.sd) ** 2, g.sd ** 2 / g.mean

    def describe(self) -> str:
        """``gamma(mean=250000, sd=60000)``, for tables and the manifest."""
        if self.name == "fixed":
            return f"fixed({self.fixed!r})"
        fields = self.spec.model_dump(exclude_none=True)
        return f"{self.name}(" + ", ".join(f"{k}={_short(v)}" for k, v in fields.items()) + ")"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _short(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    return f"{value:g}" if isinstance(value, float) else str(value)


class Uncertain(_Model):
    """One uncertain scenario value: where it is, what it is called and how it is distributed."""

    path: str = Field(min_length=1, description="Dotted path of the value, as for --set "
                                                "(cohorts and steps by name).")
    name: str | None = Field(default=None, min_length=1, max_length=200, pattern=NAME_PATTERN, description="Label in tables and figures (default: the path). "
                                                                     "Scenarios that name a parameter alike share its draws.")
    distribution: UncertainDistribution
    bounds: tuple[Number, Number] | None = Field(
        default=None, description="Truncate the distribution to [low, high] (e.g. a gamma kept within [0, 1]).")

    @model_validator(mode="after")
    def _check(self) -> "Uncertain":
        if any(not part for part in self.path.split(".")):
            raise ValueError(f"path '{self.path}' has an empty key")
        if self.bounds is not None:
            if self.distribution.name == "fixed":
                raise ValueError("bounds do not apply to a fixed value")
            low, high = self.bounds
            if not low < high:
                raise ValueError(f"bounds: low ({low:g}) must be below high ({high:g})")
            lo, hi = self.distribution.support()
            if high <= lo or low >= hi:
                raise ValueError(f"bounds [{low:g}, {high:g}] leave nothing of the {self.distribution.name}'s "
                                 f"range ({lo:g}, {hi:g})")
            p_low, p_high = self._cdf_bounds()
            if p_high - p_low < 1e-6:
                raise ValueError(f"bounds [{low:g}, {high:g}] keep less than one in a million of the "
                                 f"{self.distribution.name}'s probability")
        return self

    @property
    def key(self) -> str:
        """The parameter's name, which keys its random stream (the path unless named)."""
        return self.name or self.path

    @property
    def is_fixed(self) -> bool:
        return self.distribution.name == "fixed"

    def _cdf_bounds(self) -> tuple[float, float]:
        assert self.bounds is not None
        low, high = self.bounds
        cdf = self.distribution.cdf(np.array([low, high]))
        return float(cdf[0]), float(cdf[1])

    def support(self) -> tuple[float, float]:
        """The interval the draws fall in (``bounds`` included)."""
        lo, hi = self.distribution.support()
        if self.bounds is not None:
            lo, hi = max(lo, self.bounds[0]), min(hi, self.bounds[1])
        return lo, hi

    def values(self, u: np.ndarray) -> list[Any]:
        """The parameter's values for uniforms ``u`` in (0, 1) (plain data for an override)."""
        if self.is_fixed:
            return [self.distribution.fixed for _ in range(len(u))]
        u = np.asarray(u, dtype=float)
        if self.bounds is not None:
            p_low, p_high = self._cdf_bounds()
            u = p_low + (p_high - p_low) * u
        x = self.distribution.ppf(u)
        lo, hi = self.support()
        return [float(v) for v in np.clip(x, lo, hi)]
