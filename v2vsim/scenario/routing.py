"""The contract's routing rule: a cohort's pathway chosen at referral by the congestion of the
primary pathway's booking site (re-exported by :mod:`.schema`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Union

from pydantic import Discriminator, Field, Tag, model_validator

from .fields import Name, NoBool, NonNegative, StrictModel as _Model

__all__ = ["PathwayRule", "PathwaySpec", "RouteWhen"]



class RouteWhen(_Model):
    waiting_more_than: Annotated[int, NoBool, Field(ge=0)] | None = Field(
        default=None,
        description="Take the fallback when more than this many patients wait for a slot of "
                    "the primary's booking site at referral.")
    expected_wait_more_than_days: NonNegative | None = Field(
        default=None,
        description="Take the fallback when the expected wait for a slot of the primary's "
                    "booking site exceeds this many days at referral: 0 if a slot can be taken "
                    "now, otherwise (waiting + 1) / (uses per day) plus the rest of a closure, "
                    "uses per day = min(slots / mean hold time, starts_per_month / 30.4375, "
                    "starts_per_week / 7, starts_per_day x session days a week / 7).")

    @model_validator(mode="after")
    def _exactly_one(self) -> "RouteWhen":
        given = [k for k in ("waiting_more_than", "expected_wait_more_than_days")
                 if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of waiting_more_than, expected_wait_more_than_days"
                             + (f" (got {', '.join(given)})" if given else ""))
        return self


class PathwayRule(_Model):
    """Routing with overflow: the primary pathway unless its booking site is congested."""

    primary: Name = Field(description="Pathway taken unless `when` holds at referral.")
    fallback: Name = Field(description="Pathway taken when `when` holds at referral.")
    when: RouteWhen = Field(
        description="Congestion test on the primary's booking site (the site of the first slot "
                    "the primary pathway takes).")


def _pathway_tag(value: Any) -> str:
    return "pathway-rule" if isinstance(value, (Mapping, PathwayRule)) else "pathway-name"


PathwaySpec = Annotated[
    Union[
        Annotated[Name, Tag("pathway-name")],
        Annotated[PathwayRule, Tag("pathway-rule")],
    ],
    Discriminator(_pathway_tag),
    Field(description="A key of `pathways`, or a rule {primary, fallback, when} choosing one "
                      "at referral."),
]
