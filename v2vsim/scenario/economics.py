"""After the pathway and what it is worth: response and survival after infusion, and the
health-economic part of the contract (follow-up, discounting, utilities, costs, life table).

A scenario with an ``economics`` section is evaluated the way health technology assessment
evaluates a treatment pathway (NICE reference case conventions, stated in the docs): every
referred patient's costs, life-years and QALYs over ``follow_up_years`` from referral, costs and
outcomes discounted at their own annual rates (3.5% / 3.5% by default; ``0`` allowed), either
by whole years from referral (``annual``: ``(1 + r)^-k`` in year ``k``, the NICE convention) or
continuously at the same effective yearly rate (``continuous``: ``(1 + r)^-t``).

A life table gives background mortality after a patient leaves the pathway (see the docs'
economics page). It is a CSV named in the scenario (``age,qx`` or ``age,sex,qx``) and read when
the scenario is loaded; the scenario then holds its rows, so that a results directory's
``scenario.yaml`` re-runs without the CSV.
"""

from __future__ import annotations

import csv
import io
import math
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from .distributions import Distribution, no_bool

__all__ = ["DAYS_PER_YEAR", "AfterInfusion", "Economics", "LifeTable", "Discount", "Utilities", "Disutilities", "EconomicCosts", "WaitEffect",
           "COST_CATEGORIES", "KIND_CATEGORY", "UTILITY_MIN", "read_life_table"]

#: Categories of cost, in the order of tables and figures.
COST_CATEGORIES = ("manufacture", "logistics", "hospital", "bridging", "follow_up", "fixed")
#: The category of a step's cost (and its site's cost per use) by the step's kind, unless the
#: step names one (``cost_category``).
KIND_CATEGORY = {
    "manufacture": "manufacture", "release": "manufacture",
    "transport": "logistics", "cryopreserve": "logistics",
    "screen": "hospital", "apheresis": "hospital", "conditioning": "hospital", "delay": "hospital",
    "infusion": "hospital",
}
#: Lowest utility allowed: below it no published tariff goes (EQ-5D-5L value sets reach about
#: -0.6; states worse than dead are allowed, a typing error like -6 is not).
UTILITY_MIN = -0.6

#: Days in a year, for life-years.
DAYS_PER_YEAR = 365.25

NoBool = BeforeValidator(no_bool)
Rate = Annotated[float, NoBool, Field(ge=0, lt=1, allow_inf_nan=False,
                                      description="An annual rate: 0.035 is 3.5% a year.")]
def _utility(value: float) -> float:
    if not UTILITY_MIN <= value <= 1:
        raise ValueError(f"a utility must be from {UTILITY_MIN} (states worse than dead, as low as "
                         f"EQ-5D value sets go) to 1 (full health), not {value:g}")
    return value


Utility = Annotated[float, NoBool, Field(allow_inf_nan=False), AfterValidator(_utility)]
NonNegative = Annotated[float, NoBool, Field(ge=0, allow_inf_nan=False)]
Positive = Annotated[float, NoBool, Field(gt=0, allow_inf_nan=False)]
Probability = Annotated[float, NoBool, Field(ge=0, le=1, allow_inf_nan=False)]
QalyLoss = Annotated[float, NoBool, Field(ge=0, le=1, allow_inf_nan=False)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Discount(_Model):
    costs: Rate = Field(default=0.035, description="Annual discount rate of costs (NICE: 0.035).")
    outcomes: Rate = Field(default=0.035, description="Annual discount rate of life-years and QALYs (NICE: 0.035).")
    method: Literal["annual", "continuous"] = Field(
        default="annual",
        description="annual: everything in year k after referral (k = 0, 1, ...) counts (1 + r)^-k; "
                    "continuous: a cost or a moment of life at t years counts (1 + r)^-t.")


class Utilities(_Model):
    """Health-state utilities (1 = full health, 0 = dead) while alive in follow-up."""

    waiting: Utility = Field(description="From referral until the patient leaves the pathway (not bridging).")
    bridging: Utility | None = Field(
        default=None, description="While a bridging course lasts, before leaving the pathway (default: waiting).")
    responder: Utility = Field(description="After an infusion that brought a response.")
    non_responder: Utility = Field(description="After an infusion without a response.")
    progressed: Utility = Field(
        description="Alive after leaving the pathway without an infusion (ineligible, a failed or "
                    "expired product, ...).")

    @property
    def while_bridging(self) -> float:
        return self.waiting if self.bridging is None else self.bridging


class Disutilities(_Model):
    """One-off QALY losses, at the infusion."""

    icu: QalyLoss = Field(default=0.0, description="QALYs lost with an ICU admission after infusion.")
    crs: QalyLoss = Field(default=0.0, description="QALYs lost with a cytokine release syndrome after infusion.")


class EconomicCosts(_Model):
    """Costs beyond the pathway's steps and sites (those are in the steps, sites and bridging)."""

    icu: NonNegative = Field(default=0.0, description="Per ICU admission, charged on the infusion day (hospital).")
    crs: NonNegative = Field(default=0.0, description="Per cytokine release syndrome, charged on the infusion day (hospital).")
    follow_up_per_year: NonNegative = Field(
        default=0.0, description="Per year alive after an infusion, within follow-up (follow_up).")
    progressed_per_year: NonNegative = Field(
        default=0.0, description="Per year alive after leaving the pathway without an infusion (follow_up).")


class WaitEffect(_Model):
    """How the wait from referral to infusion changes the benefit of the infusion.

    With ``w`` the referral-to-infusion days, ``k = (w - reference_days) / per_days``: the odds
    of a response are multiplied by ``response_odds_ratio ** k`` and the hazard of death after
    infusion (of those not cured) by ``survival_hazard_ratio ** k``. The defaults (1, 1) are no
    dependence.
    """

    per_days: Positive = Field(default=30.0, description="Days of waiting the ratios refer to.")
    reference_days: NonNegative = Field(
        default=0.0, description="Wait at which response_probability and the survival apply as given.")
    response_odds_ratio: Positive = Field(default=1.0, description="Odds ratio of a response per per_days waited.")
    survival_hazard_ratio: Positive = Field(
        default=1.0, description="Hazard ratio of death after infusion per per_days waited.")

    @property
    def is_null(self) -> bool:
        return self.response_odds_ratio == 1.0 and self.survival_hazard_ratio == 1.0


class LifeTable(_Model):
    """Annual probabilities of death by age (and sex): ``qx`` of age ``x`` is the chance that
    someone alive at exact age ``x`` dies before ``x + 1``. Within a year of age the hazard is
    constant (``-log(1 - qx)``); past the last age it stays that of the last age (``qx = 1``
    there ends every life within that year)."""

    file: str | None = Field(default=None, description="The CSV it was read from (for the record).")
    ages: list[Annotated[int, NoBool, Field(ge=0, le=150)]] = Field(min_length=1)
    qx: dict[Literal["all", "male", "female"], list[Annotated[float, NoBool, Field(ge=0, le=1, allow_inf_nan=False)]]]

    @model_validator(mode="after")
    def _consistent(self) -> "LifeTable":
        ages = self.ages
        for a, b in zip(ages, ages[1:]):
            if b != a + 1:
                raise ValueError(f"ages must go up one year at a time: {b} follows {a}")
        keys = set(self.qx)
        if keys not in ({"all"}, {"male", "female"}):
            raise ValueError("give qx for 'all', or for both 'male' and 'female'")
        for key, values in self.qx.items():
            if len(values) != len(ages):
                raise ValueError(f"qx for {key} has {len(values)} values for {len(ages)} ages")
        return self

    @property
    def by_sex(self) -> bool:
        return "male" in self.qx


def read_life_table(text: str, name: str) -> dict[str, object]:
    """The rows of a life-table CSV as :class:`LifeTable` data; raises ``ValueError`` naming the
    CSV's line. Lines starting with ``#`` are comments (the source goes there)."""
    lines = [(k, line) for k, line in enumerate(text.splitlines(), 1) if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise ValueError(f"{name}: no rows")
    header_line, header = lines[0]
    columns = [c.strip().lower() for c in next(csv.reader(io.StringIO(header)))]
    if columns not in (["age", "qx"], ["age", "sex", "qx"]):
        raise ValueError(f"{name} line {header_line}: the columns must be 'age,qx' or 'age,sex,qx', not "
                         f"'{header.strip()}'")
    with_sex = len(columns) == 3
    rows: dict[str, list[tuple[int, float]]] = {}
    for k, line in lines[1:]:
        cells = [c.strip() for c in next(csv.reader(io.StringIO(line)))]
        if len(cells) != len(columns):
            raise ValueError(f"{name} line {k}: {len(cells)} values for {len(columns)} columns")
        try:
            age_f = float(cells[0])
        except ValueError:
            raise ValueError(f"{name} line {k}: age '{cells[0]}' is not a number") from None
        if not age_f.is_integer() or not 0 <= age_f <= 150:
            raise ValueError(f"{name} line {k}: age must be a whole number of years from 0 to 150, not {cells[0]}")
        sex = cells[1].lower() if with_sex else "all"
        if sex not in ("male", "female", "all"):
            raise ValueError(f"{name} line {k}: sex must be male or female, not '{cells[1]}'")
        try:
            q = float(cells[-1])
        except ValueError:
            raise ValueError(f"{name} line {k}: qx '{cells[-1]}' is not a number") from None
        if not (0.0 <= q <= 1.0) or math.isnan(q):
            raise ValueError(f"{name} line {k}: qx must be a probability in [0, 1], not {cells[-1]}")
        seq = rows.setdefault(sex, [])
        age = int(age_f)
        if seq and age != seq[-1][0] + 1:
            what = "is not above" if age <= seq[-1][0] else "leaves a gap after"
            raise ValueError(f"{name} line {k}: age {age} {what} the previous age {seq[-1][0]}"
                             + (f" ({sex})" if with_sex else "") + "; ages must go up one year at a time")
        seq.append((age, q))
    if with_sex and set(rows) != {"male", "female"}:
        raise ValueError(f"{name}: give rows for both male and female (found {', '.join(sorted(rows))})")
    starts = {sex: (seq[0][0], seq[-1][0]) for sex, seq in rows.items()}
    if len(set(starts.values())) > 1:
        raise ValueError(f"{name}: male and female rows must cover the same ages ("
                         + ", ".join(f"{s} {a}-{b}" for s, (a, b) in sorted(starts.items())) + ")")
    first = next(iter(rows.values()))
    return {"file": name, "ages": [a for a, _ in first], "qx": {sex: [q for _, q in seq] for sex, seq in rows.items()}}


class AfterInfusion(_Model):
    response_probability: Probability = 0.0
    icu_probability: Probability = 0.0
    crs_probability: Probability = Field(
        default=0.0, description="Chance of a cytokine release syndrome after infusion (its own draw).")
    survival_responder: Distribution | None = Field(
        default=None,
        description="Survival of a responder who is not cured, in days from infusion ('never': alive "
                    "through the follow-up). Give with survival_non_responder, and follow_up_days "
                    "unless the scenario has an economics section.")
    survival_non_responder: Distribution | None = Field(
        default=None, description="Survival of a non-responder, in days from infusion.")
    cure_fraction: Probability = Field(
        default=0.0,
        description="Share of responders who are cured (a mixture cure model): their disease never "
                    "kills them; only background mortality (the life table) does.")
    follow_up_days: Positive | None = Field(
        default=None,
        description="Window, in days from referral, over which life-years and deaths are counted "
                    "(life_years, death_day; metrics life_years_per_referred, deaths_in_follow_up). "
                    "With an economics section its follow_up_years is the window instead.")
    wait_effect: WaitEffect = Field(
        default_factory=WaitEffect,
        description="How the wait from referral to infusion changes the response and the survival "
                    "after infusion (default: not at all).")

    @model_validator(mode="after")
    def _survival_together(self) -> "AfterInfusion":
        three = ("survival_responder", "survival_non_responder", "follow_up_days")
        survival = [k for k in three[:2] if getattr(self, k) is not None]
        if len(survival) == 1 or (self.follow_up_days is not None and not survival):
            # follow_up_days may come from an economics section instead (Scenario.economics_problems).
            missing = [k for k in three if getattr(self, k) is None
                       and not (k == "follow_up_days" and len(survival) == 1)]
            raise ValueError("give survival_responder, survival_non_responder and follow_up_days "
                             f"together (missing: {', '.join(missing)})")
        return self

    @property
    def has_survival(self) -> bool:
        return self.survival_responder is not None

    @property
    def models_survival(self) -> bool:
        """Whether life-years are counted for the cohort (set by the scenario's validation: a
        survival model with follow_up_days, or with an economics section)."""
        return self.has_survival


class Economics(_Model):
    """The health-economic evaluation of a scenario (see the module text)."""

    follow_up_years: Positive | Literal["lifetime"] = Field(
        description="Years from referral over which costs, life-years and QALYs count ('lifetime': "
                    "until death, which needs a life table).")
    discount: Discount = Field(default_factory=Discount)
    life_table: LifeTable | None = Field(
        default=None,
        description="A CSV (age,qx or age,sex,qx), relative to the scenario file: background "
                    "mortality from the day a patient leaves the pathway.")
    utilities: Utilities
    disutilities: Disutilities = Field(default_factory=Disutilities)
    costs: EconomicCosts = Field(default_factory=EconomicCosts)
    wtp: list[Positive] = Field(
        default_factory=list,
        description="Willingness-to-pay thresholds per QALY (the scenario's currency) for net "
                    "monetary benefit; compare --wtp overrides them.")

    @model_validator(mode="after")
    def _lifetime_needs_table(self) -> "Economics":
        if self.follow_up_years == "lifetime" and self.life_table is None:
            raise ValueError("follow_up_years: lifetime needs a life_table (otherwise a cured "
                             "patient would live for ever)")
        return self

    @property
    def follow_up_days(self) -> float:
        return math.inf if self.follow_up_years == "lifetime" else float(self.follow_up_years) * DAYS_PER_YEAR
