"""Bridging therapy in the scenario contract (``cohorts[].bridging``): a hazard ratio on both
disease clocks while the course lasts, its costs and its toxicity.

A course lasts a fixed or random number of days, or ``until_infusion``: until the patient
leaves the pathway (infused or not). Split from :mod:`.schema` (which re-exports
:class:`Bridging`) to keep each module short.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Discriminator, Field, Tag, ValidationInfo, field_validator

from .distributions import Distribution, DistributionSpec, not_never as _not_never
from .fields import Name, NonNegative, Probability, StrictModel as _Model

__all__ = ["Bridging", "CourseLength", "UNTIL_INFUSION"]



#: ``duration: until_infusion``: the course lasts until the patient leaves the pathway.
UNTIL_INFUSION = "until_infusion"


def _course_tag(value: Any) -> str:
    return "course-until" if value == UNTIL_INFUSION else "course-length"


CourseLength = Annotated[
    Union[
        Annotated[Literal["until_infusion"], Tag("course-until")],
        Annotated[Distribution, Tag("course-length")],
    ],
    Discriminator(_course_tag),
]


class Bridging(_Model):
    """Bridging therapy given while the patient waits for the product."""

    start_step: Name = Field(
        description="Step of the pathway at which bridging starts: when the patient reaches it "
                    "(before any wait for a slot or a start day), on the first visit only.")
    duration: CourseLength = Field(
        description="Length of the bridging course, in days, or until_infusion: it lasts until "
                    "the patient leaves the pathway (infused or not).")
    hazard_ratio: NonNegative = Field(
        description="Multiplies the death and ineligibility hazards while bridging lasts "
                    "(0.6: 40% lower hazard; above 1 is allowed).")
    cost: NonNegative = Field(default=0.0, description="Charged when bridging starts.")
    cost_per_day: NonNegative = Field(
        default=0.0,
        description="Charged for each day on bridging: from its start to the end of the course "
                    "or the day the patient leaves the pathway, whichever comes first.")
    toxicity_probability: Probability = Field(
        default=0.0,
        description="Chance that the course causes a toxicity at its end, after which the "
                    "patient is unfit for toxicity_delay days (not with duration until_infusion).")
    toxicity_delay: Distribution | None = Field(
        default=None, validate_default=True,
        description="Days the patient is unfit after a toxicity: no screen, apheresis, "
                    "conditioning or infusion step may begin then.")

    _check_duration = field_validator("duration")(
        lambda v: v if v == UNTIL_INFUSION else _not_never(v))

    @property
    def until_infusion(self) -> bool:
        """Whether the course lasts until the patient leaves the pathway."""
        return self.duration == UNTIL_INFUSION

    @field_validator("toxicity_probability")
    @classmethod
    def _toxicity_needs_an_end(cls, value: float, info: ValidationInfo) -> float:
        if value > 0 and info.data.get("duration") == UNTIL_INFUSION:
            raise ValueError("a course until_infusion has no end for a toxicity to follow: "
                             "toxicity_probability must be 0 with duration until_infusion")
        return value

    @field_validator("toxicity_delay")
    @classmethod
    def _delay_with_probability(cls, value: DistributionSpec | None,
                                info: ValidationInfo) -> DistributionSpec | None:
        if value is not None:
            return _not_never(value)
        if info.data.get("toxicity_probability", 0.0) > 0:
            raise ValueError("toxicity_probability > 0 needs a toxicity_delay")
        return value


