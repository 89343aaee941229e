"""The field types and base model that the scenario's models share (:mod:`.schema`,
:mod:`.routing`, :mod:`.waitlist`, :mod:`.bridging`): one definition of a number that must be
written as a number, a probability, a name, and a frozen model that refuses unknown keys."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from .values import NAME_PATTERN, no_bool

__all__ = ["Name", "NoBool", "NonNegative", "Positive", "Probability", "StrictModel"]

# YAML `true`/`false` are never numbers here (pydantic would read them as 1 and 0).
NoBool = BeforeValidator(no_bool)
Probability = Annotated[float, NoBool, Field(ge=0, le=1, allow_inf_nan=False)]
NonNegative = Annotated[float, NoBool, Field(ge=0, allow_inf_nan=False)]
Positive = Annotated[float, NoBool, Field(gt=0, allow_inf_nan=False)]
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=NAME_PATTERN)]


class StrictModel(BaseModel):
    """A part of a scenario: unknown keys are refused, and a loaded scenario does not change."""

    model_config = ConfigDict(extra="forbid", frozen=True)
