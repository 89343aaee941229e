"""The contract's waitlist policies: a starting backlog, a site's queue order, re-referral.

Each is optional and changes nothing when absent:

* ``backlog`` (top level): patients already waiting at day 0, with the days they have already
  waited; their disease clocks are conditioned on having lasted that long.
* ``queue`` (on a site): the order in which waiting patients are served — the time of the
  request (the default, first come first served), the date of referral (date of eligibility),
  sickest first (shortest remaining untreated survival, exact or as a committee's noisy
  estimate) or most likely to benefit (highest chance of response); first come first served
  breaks ties, and a cohort's ``priority`` still comes first.
* ``re_referral`` (on a cohort): a patient who has waited ``after_days`` for a slot leaves the
  list and starts another pathway (e.g. the overseas route).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from .distributions import Distribution, Fixed, Never
from .fields import Name, NoBool, StrictModel as _Model

__all__ = ["Backlog", "BacklogEntry", "QueueRule", "QUEUE_ORDERS", "ReReferral", "backlog_entries"]


#: The orders a site's queue may follow (see :class:`QueueRule`).
QueueOrder = Literal["request", "referral", "sickest_first", "most_benefit"]
QUEUE_ORDERS: tuple[str, ...] = QueueOrder.__args__  # type: ignore[attr-defined]


class BacklogEntry(_Model):
    """Patients already on the list at day 0."""

    cohort: Name | None = Field(
        default=None,
        description="Their cohort (default: drawn by the cohorts' shares, as for a referral).")
    count: Annotated[int, NoBool, Field(ge=1, le=1_000_000)] = Field(
        default=1, description="How many such patients.")
    waited_days: Distribution = Field(
        default_factory=lambda: Fixed(value=0),
        description="Days each has already waited at day 0 (a number or a distribution drawn "
                    "per patient). Their disease clocks are conditioned on having lasted that "
                    "long; the order of the list (first come first served) is by days waited, "
                    "longest first.")

    @model_validator(mode="after")
    def _finite_wait(self) -> "BacklogEntry":
        if isinstance(self.waited_days, Never):
            raise ValueError("waited_days cannot be 'never'")
        return self


def _backlog_shape(value: Any) -> Any:
    """``backlog: 20`` is 20 patients of drawn cohorts who have waited 0 days."""
    if isinstance(value, bool):
        raise ValueError("must be a count or a list of {cohort, count, waited_days}, not "
                         f"{str(value).lower()}")
    if isinstance(value, int):
        return [{"count": value}]
    return value


Backlog = Annotated[list[BacklogEntry], BeforeValidator(_backlog_shape), Field(min_length=1)]


def backlog_entries(backlog: list[BacklogEntry] | None) -> int:
    """The number of patients in a backlog."""
    return sum(e.count for e in backlog or ())


class QueueRule(_Model):
    """The order in which a site's waiting patients are served."""

    order: QueueOrder = Field(
        default="request",
        description="request: first come first served by the time of the request (the default); "
                    "referral: earliest referral first (date of eligibility); sickest_first: "
                    "shortest remaining untreated survival first (the patient's death clock as it "
                    "stands when it joins the queue); most_benefit: highest chance of response "
                    "first (after_infusion.response_probability with its wait_effect, at the "
                    "time of the request). Ties: first come first served. A cohort's priority "
                    "still comes first.")
    estimate_error: Annotated[float, NoBool, Field(ge=0, le=10, allow_inf_nan=False)] = Field(
        default=0.0,
        description="sickest_first only: the committee estimates remaining survival with a "
                    "multiplicative lognormal error of this standard deviation on the log scale "
                    "(0: the model's exact clock, which no real committee knows).")

    @model_validator(mode="after")
    def _error_with_sickest(self) -> "QueueRule":
        if self.estimate_error > 0 and self.order != "sickest_first":
            raise ValueError("estimate_error is only used with order: sickest_first")
        return self

    @property
    def is_default(self) -> bool:
        return self.order == "request"


class ReReferral(_Model):
    """Leaving a site's list for another pathway after a long wait."""

    after_days: Annotated[float, NoBool, Field(gt=0, le=36500, allow_inf_nan=False)] = Field(
        description="Days of waiting for a slot (one wait, at any step of the cohort's pathway) "
                    "after which the patient leaves the list.")
    pathway: Name = Field(
        description="The pathway the patient starts then, from its first step (its clocks and "
                    "costs so far go with it; slots held are given back). Once only.")
