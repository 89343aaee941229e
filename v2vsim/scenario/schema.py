"""The scenario contract: what a scenario file may say, as strict pydantic models.

Unknown keys are errors (``extra="forbid"``) and models are frozen. The shared constants of the
contract live here too: weekdays, step kinds and every outcome a patient can have. Reading YAML is
in :mod:`.yaml_io`, checks that span several keys in :mod:`.references`, and
:func:`~.loading.load_scenario` puts them together.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BeforeValidator,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .bridging import UNTIL_INFUSION, Bridging
from .distributions import Distribution, Fixed, Never, not_never as _not_never
from .fields import Name, NoBool, NonNegative, Positive, Probability, StrictModel as _Model
from .values import NAME_PATTERN, TEXT_PATTERN
from .economics import DAYS_PER_YEAR, AfterInfusion, Economics
from .uncertain import Uncertain
from .routing import PathwayRule, PathwaySpec, RouteWhen
from .waitlist import Backlog, QueueRule, ReReferral

__all__ = [
    "Scenario",
    "Cohort",
    "Site",
    "Pathway",
    "Step",
    "Bridging",
    "OutOfSpecInfusion",
    "UNTIL_INFUSION",
    "Closure",
    "PathwayRule",
    "RouteWhen",
    "SlotChange",
    "DAYS_PER_YEAR",
    "NAME_PATTERN",
    "TEXT_PATTERN",
    "OUTCOME_BY_KIND",
    "OUTCOMES",
    "STEP_KINDS",
    "WEEKDAYS",
]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
StepKind = Literal[
    "screen", "apheresis", "cryopreserve", "transport", "manufacture", "release",
    "conditioning", "delay", "infusion",
]
STEP_KINDS: tuple[str, ...] = StepKind.__args__  # type: ignore[attr-defined]

#: Every outcome a patient can have, in a fixed order (tables, legends and the model's codes).
OUTCOMES = (
    "infused",
    "died",
    "ineligible",
    "screen_failed",
    "collection_failed",
    "lost_in_transit",
    "manufacturing_failed",
    "out_of_specification",
    "product_expired",
    "infusion_failed",
    "step_failed",
    "unresolved",
)

#: The outcome of a patient whose pathway ends with a failure of a step of this kind.
OUTCOME_BY_KIND = {
    "screen": "screen_failed",
    "apheresis": "collection_failed",
    "transport": "lost_in_transit",
    "manufacture": "manufacturing_failed",
    "release": "out_of_specification",
    "infusion": "infusion_failed",
}



def _label_field(of: str) -> Any:
    """The optional display ``label`` of a site, step or cohort (one line, like a name)."""
    return Field(default=None, description=(
        f"Display name of the {of} in figures and reports (default: its {'key' if of == 'site' else 'name'}). "
        "Display only: it changes no result."))


Label = Annotated[str, Field(min_length=1, max_length=200, pattern=NAME_PATTERN)] | None


class OnFailure(_Model):
    retry_from: Name
    max_attempts: Annotated[int, NoBool, Field(ge=1, le=1000)]


class OutOfSpecInfusion(_Model):
    """A release failure infused anyway, as a non-conforming product."""

    probability: Probability = Field(
        description="Chance that a product failing release is infused anyway (drawn for each "
                    "failed release, stream step:NAME:ATTEMPT:exception); otherwise the failure "
                    "stands (on_failure, or the outcome out_of_specification).")
    response_probability: Probability = Field(
        description="Chance of a response after an out-of-specification infusion: replaces the "
                    "cohort's after_infusion.response_probability (its wait_effect still applies).")


class Step(_Model):
    name: Name
    label: Label = _label_field("step")
    kind: StepKind
    duration: Distribution = Field(default_factory=lambda: Fixed(value=0))
    site: Name | None = None
    reserve_from: Name | None = None
    starts_on: list[Weekday] | None = None
    failure_probability: Probability = 0.0
    on_failure: OnFailure | None = None
    cost: NonNegative = 0.0
    cost_category: Literal["manufacture", "logistics", "hospital"] | None = Field(
        default=None,
        description="Category of the step's cost and its site's cost per use in the economic "
                    "breakdown (default by kind: manufacture and release -> manufacture; transport "
                    "and cryopreserve -> logistics; the rest -> hospital).")
    shelf_life: Positive | None = None
    out_of_spec_infusion: OutOfSpecInfusion | None = Field(
        default=None,
        description="Only on a release step: a failure of the step may still be infused, "
                    "counted apart (infused_out_of_specification), with its own response "
                    "probability.")

    _check_duration = field_validator("duration")(_not_never)

    # Field validators (not a model validator) so that the error points at the offending key.
    # Fields are validated in declaration order, so `kind` and `site` are in info.data unless
    # they were themselves invalid (then that error is reported instead).
    @field_validator("reserve_from")
    @classmethod
    def _reserve_needs_site(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and "site" in info.data and info.data["site"] is None:
            raise ValueError("reserve_from needs a site on the same step")
        return value

    @field_validator("shelf_life")
    @classmethod
    def _shelf_life_on_infusion(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is not None and info.data.get("kind", "infusion") != "infusion":
            raise ValueError(f"shelf_life is only allowed on the infusion step, not on a "
                             f"{info.data['kind']} step")
        return value

    @field_validator("out_of_spec_infusion")
    @classmethod
    def _exception_on_release(cls, value: OutOfSpecInfusion | None,
                              info: ValidationInfo) -> OutOfSpecInfusion | None:
        if value is not None and info.data.get("kind", "release") != "release":
            raise ValueError(f"out_of_spec_infusion is only allowed on a release step, not on a "
                             f"{info.data['kind']} step")
        return value


class Pathway(_Model):
    steps: list[Step] = Field(min_length=1)


class Cohort(_Model):
    name: Name
    label: Label = _label_field("cohort")
    share: NonNegative = 1.0
    pathway: PathwaySpec
    priority: Annotated[int, NoBool] = 0
    time_to_death: Distribution = Field(default_factory=Never)
    time_to_ineligible: Distribution = Field(default_factory=Never)
    after_infusion: AfterInfusion = Field(default_factory=AfterInfusion)
    bridging: Bridging | None = Field(
        default=None,
        description="Optional bridging therapy: multiplies the disease-clock hazards while it lasts.")
    age: Distribution | None = Field(
        default=None,
        description="Age at referral, in years (needed with a life table).")
    male_share: Probability | None = Field(
        default=None, description="Share of men (needed with a life table by sex).")
    re_referral: ReReferral | None = Field(
        default=None,
        description="Leave a site's list for another pathway after waiting after_days for a slot.")

    _check_age = field_validator("age")(lambda v: _not_never(v) if v is not None else v)

    def pathway_names(self) -> list[str]:
        """Every pathway a patient of this cohort may take (primary first)."""
        if isinstance(self.pathway, PathwayRule):
            return [self.pathway.primary, self.pathway.fallback]
        return [self.pathway]


def _date_only(value: Any) -> Any:
    if isinstance(value, (bool, int, float)):
        raise ValueError("must be a date like 2025-01-28 (day numbers go in from_day/to_day)")
    return value


Date = Annotated[dt.date, BeforeValidator(_date_only)]
DayNumber = Annotated[int, NoBool, Field(ge=0, le=36500 * 8)]


class SlotChange(_Model):
    """From a date (or day), the site has this many slots."""

    from_: Date | None = Field(default=None, alias="from",
                               description="First date with this many slots.")
    from_day: DayNumber | None = Field(default=None,
                                       description="First day (0 = start_date) with this many slots.")
    slots: Annotated[int, NoBool, Field(ge=0, le=1_000_000)] = Field(
        description="Concurrent uses from then on. A reduction evicts nobody: it takes effect "
                    "as slots are released.")

    @model_validator(mode="after")
    def _one_start(self) -> "SlotChange":
        if (self.from_ is None) == (self.from_day is None):
            raise ValueError("give exactly one of from, from_day")
        return self

    def day(self, start_date: dt.date) -> int:
        return self.from_day if self.from_day is not None else (self.from_ - start_date).days  # type: ignore[operator]


class Closure(_Model):
    """Whole days, inclusive, on which no use of the site may start."""

    from_: Date | None = Field(default=None, alias="from", description="First closed date.")
    to: Date | None = Field(default=None, description="Last closed date (inclusive).")
    from_day: DayNumber | None = Field(default=None, description="First closed day (0 = start_date).")
    to_day: DayNumber | None = Field(default=None, description="Last closed day (inclusive).")

    @field_validator("to")
    @classmethod
    def _to_after_from(cls, value: dt.date | None, info: ValidationInfo) -> dt.date | None:
        start = info.data.get("from_")
        if value is not None and start is not None and value < start:
            raise ValueError(f"to ({value}) is before from ({start})")
        return value

    @field_validator("to_day")
    @classmethod
    def _to_day_after_from_day(cls, value: int | None, info: ValidationInfo) -> int | None:
        start = info.data.get("from_day")
        if value is not None and start is not None and value < start:
            raise ValueError(f"to_day ({value}) is before from_day ({start})")
        return value

    @model_validator(mode="after")
    def _one_form(self) -> "Closure":
        dates = self.from_ is not None or self.to is not None
        days = self.from_day is not None or self.to_day is not None
        if dates == days:
            raise ValueError("give from and to (dates), or from_day and to_day (days)")
        if dates and (self.from_ is None or self.to is None):
            raise ValueError("give both from and to")
        if days and (self.from_day is None or self.to_day is None):
            raise ValueError("give both from_day and to_day")
        return self

    def days(self, start_date: dt.date) -> tuple[float, float]:
        """The closed interval as ``[first day, day after the last)`` in simulation days."""
        if self.from_day is not None:
            return float(self.from_day), float(self.to_day) + 1.0  # type: ignore[operator]
        return (float((self.from_ - start_date).days),  # type: ignore[operator]
                float((self.to - start_date).days) + 1.0)  # type: ignore[operator]


def _slots_tag(value: Any) -> str:
    return "slot-schedule" if isinstance(value, (list, tuple)) else "slot-count"


SlotsSpec = Annotated[
    Union[
        Annotated[int, NoBool, Field(ge=1, le=1_000_000), Tag("slot-count")],
        Annotated[list[SlotChange], Field(min_length=1), Tag("slot-schedule")],
    ],
    Discriminator(_slots_tag),
    Field(description="Concurrent uses, or a schedule [{from: DATE, slots: N}, ...] "
                      "(the first entry on or before start_date)."),
]


class Site(_Model):
    label: Label = _label_field("site")
    slots: SlotsSpec
    starts_on: list[Weekday] | None = None
    cost_per_use: NonNegative = 0.0
    fixed_cost_per_year: NonNegative = 0.0
    starts_per_month: Annotated[int, NoBool, Field(ge=1, le=1_000_000)] | None = Field(
        default=None,
        description="At most this many uses may start (slots taken) per calendar month; "
                    "unused allocation does not carry over.")
    starts_per_week: Annotated[int, NoBool, Field(ge=1, le=1_000_000)] | None = Field(
        default=None,
        description="At most this many uses may start per calendar week (Monday to Sunday).")
    starts_per_day: Annotated[int, NoBool, Field(ge=1, le=1_000_000)] | None = Field(
        default=None,
        description="At most this many uses may start per calendar day (sessions: chairs x "
                    "sessions a day); with starts_on, only on those weekdays (no slot of the "
                    "site is taken on another day).")
    closures: list[Closure] | None = Field(
        default=None,
        description="Date ranges (inclusive) in which no use may start: no slot is taken and "
                    "no step on the site begins. Uses under way continue.")
    queue: QueueRule | None = Field(
        default=None,
        description="The order in which waiting patients are served (default: first come first "
                    "served within a cohort priority).")

    @property
    def has_calendar(self) -> bool:
        """Whether the site's capacity or starts depend on the date."""
        return (isinstance(self.slots, list) or bool(self.closures)
                or self.starts_per_month is not None or self.starts_per_week is not None
                or self.starts_per_day is not None)

    def slot_changes(self, start_date: dt.date) -> list[tuple[float, int]]:
        """``(day, slots)`` in time order; a plain count is ``[(0, slots)]``."""
        if isinstance(self.slots, list):
            return [(float(c.day(start_date)), c.slots) for c in self.slots]
        return [(0.0, self.slots)]

    def closed_days(self, start_date: dt.date) -> list[tuple[float, float]]:
        """Closures as sorted, merged ``[start, end)`` intervals in simulation days."""
        merged: list[tuple[float, float]] = []
        for a, b in sorted(c.days(start_date) for c in self.closures or ()):
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        return merged


class Arrivals(_Model):
    rate_per_year: Positive | None = None
    interarrival: Distribution | None = None
    schedule: list[NonNegative] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "Arrivals":
        given = [k for k in ("rate_per_year", "interarrival", "schedule") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of rate_per_year, interarrival, schedule"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if isinstance(self.interarrival, Never):
            raise ValueError("interarrival cannot be 'never'")
        if self.interarrival is not None and self.interarrival.mean() <= 0:
            raise ValueError("interarrival must have a positive mean")
        return self


class Scenario(_Model):
    """A validated scenario. Build it with :func:`load_scenario`."""

    name: Name
    description: Annotated[str, Field(pattern=TEXT_PATTERN)] | None = None
    start_date: dt.date = dt.date(2025, 1, 6)
    horizon_days: Annotated[float, NoBool, Field(gt=0, le=36500 * 4, allow_inf_nan=False)]
    drain_days: Annotated[float, NoBool, Field(ge=0, le=36500 * 4, allow_inf_nan=False)] = 3650.0
    warmup_days: Annotated[float, NoBool, Field(ge=0, allow_inf_nan=False, description=(
        "Days from day 0 whose referrals are simulated but not counted (0: none)."))] = 0.0
    replications: Annotated[int, NoBool, Field(ge=1, le=1_000_000)] = 100
    seed: Annotated[int, NoBool, Field(ge=0, lt=2**63)] = 12345
    currency: Name = "USD"
    arrivals: Arrivals
    cohorts: list[Cohort] = Field(min_length=1)
    sites: dict[Name, Site] = Field(default_factory=dict)
    pathways: dict[Name, Pathway] = Field(min_length=1)
    backlog: Backlog | None = Field(
        default=None,
        description="Patients already waiting at day 0: a count, or a list of {cohort, count, "
                    "waited_days}.")
    economics: Economics | None = Field(
        default=None,
        description="Health-economic evaluation: follow-up, discounting, utilities, costs, life table.")
    uncertain: list[Uncertain] = Field(
        default_factory=list,
        description="Uncertain inputs for probabilistic sensitivity analysis (v2vsim psa): scenario "
                    "values by dotted path, each with a distribution for the value itself.")

    @field_validator("warmup_days")
    @classmethod
    def _warmup_in_horizon(cls, value: float, info: ValidationInfo) -> float:
        horizon = info.data.get("horizon_days")
        if horizon is not None and value >= horizon:
            raise ValueError(f"must be less than horizon_days ({horizon:g})")
        return value

    def counted_days(self) -> float:
        """The referral window whose patients are counted: ``horizon_days - warmup_days``."""
        return self.horizon_days - self.warmup_days

    def economics_problems(self) -> list[tuple[list[Any], str]]:
        """What the economics section needs of the cohorts, as ``(key path, message)``."""
        eco = self.economics
        out: list[tuple[list[Any], str]] = []
        for k, c in enumerate(self.cohorts):
            after = c.after_infusion
            at = ["cohorts", k, "after_infusion"]
            if eco is None:
                if after.has_survival and after.follow_up_days is None:
                    out.append((at, "give survival_responder, survival_non_responder and follow_up_days "
                                    "together (missing: follow_up_days), or an economics section"))
                if c.age is not None or c.male_share is not None:
                    out.append((["cohorts", k, "age" if c.age is not None else "male_share"],
                                "only used with an economics section's life table"))
                continue
            if c.re_referral is not None:
                out.append((["cohorts", k, "re_referral"], "re-referral is not available with an economics "
                            "section (its charges are kept by step of one pathway)"))
            if not after.has_survival:
                out.append((at, "economics needs survival_responder and survival_non_responder "
                                "(days from infusion)"))
            if after.follow_up_days is not None:
                out.append((at + ["follow_up_days"], "with economics the follow-up is "
                            "economics.follow_up_years; remove follow_up_days"))
            table = eco.life_table
            if table is not None and c.age is None:
                out.append((["cohorts", k], "a life table needs the cohort's age (years at referral)"))
            if table is not None and table.by_sex and c.male_share is None:
                out.append((["cohorts", k], "the life table is by sex: give male_share (the share of men)"))
            if c.male_share is not None and (table is None or not table.by_sex):
                out.append((["cohorts", k, "male_share"], "needs a life table by sex"))
        return out


    def cohort_shares(self) -> list[float]:
        total = sum(c.share for c in self.cohorts)
        return [c.share / total for c in self.cohorts]

    def expected_referrals(self) -> float:
        """Expected referrals per replication (for sizing and refusing absurd runs), the
        patients of a starting backlog included."""
        arr = self.arrivals
        waiting = float(sum(e.count for e in self.backlog or ()))
        if arr.rate_per_year is not None:
            return waiting + arr.rate_per_year * self.horizon_days / 365.0
        if arr.schedule is not None:
            return waiting + float(sum(1 for t in arr.schedule if t < self.horizon_days))
        return waiting + self.horizon_days / arr.interarrival.mean()  # type: ignore[union-attr]
