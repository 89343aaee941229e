"""The scenario contract: pydantic models and YAML loading with line numbers.

``load_scenario`` reads a YAML file safely (ruamel.yaml round-trip mode never constructs
arbitrary objects and keeps the line of every key), validates it strictly (unknown keys are
errors) and reports *every* problem as ``FILE:LINE: key.path: message`` in one
:class:`ScenarioError`.
"""

from __future__ import annotations

import datetime as dt
import difflib
import io
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.constructor import ConstructorError, RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from . import distributions as _dists
from .distributions import DIST_NAMES, Distribution, DistributionSpec, Fixed, Never, no_bool

__all__ = [
    "Scenario",
    "Cohort",
    "Site",
    "Pathway",
    "Step",
    "Bridging",
    "Closure",
    "PathwayRule",
    "SlotChange",
    "ScenarioError",
    "Problem",
    "load_scenario",
    "scenario_from_dict",
    "scenario_to_yaml",
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

#: Largest YAML document accepted, in bytes (a scenario is a few kilobytes).
MAX_FILE_BYTES = 2_000_000

# YAML `true`/`false` are never numbers here (pydantic would read them as 1 and 0).
NoBool = BeforeValidator(no_bool)
Probability = Annotated[float, NoBool, Field(ge=0, le=1, allow_inf_nan=False)]
NonNegative = Annotated[float, NoBool, Field(ge=0, allow_inf_nan=False)]
Positive = Annotated[float, NoBool, Field(gt=0, allow_inf_nan=False)]
Name = Annotated[str, Field(min_length=1, max_length=200)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _not_never(value: DistributionSpec) -> DistributionSpec:
    if isinstance(value, Never):
        raise ValueError("'never' is only allowed for disease clocks")
    return value


class OnFailure(_Model):
    retry_from: Name
    max_attempts: Annotated[int, NoBool, Field(ge=1, le=1000)]


class Step(_Model):
    name: Name
    kind: StepKind
    duration: Distribution = Field(default_factory=lambda: Fixed(value=0))
    site: Name | None = None
    reserve_from: Name | None = None
    starts_on: list[Weekday] | None = None
    failure_probability: Probability = 0.0
    on_failure: OnFailure | None = None
    cost: NonNegative = 0.0
    shelf_life: Positive | None = None

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


class Pathway(_Model):
    steps: list[Step] = Field(min_length=1)


#: Days in a year, for life-years.
DAYS_PER_YEAR = 365.25


class AfterInfusion(_Model):
    response_probability: Probability = 0.0
    icu_probability: Probability = 0.0
    survival_responder: Distribution | None = Field(
        default=None,
        description="Survival of a responder, in days from infusion ('never': alive through the "
                    "follow-up). Give with survival_non_responder and follow_up_days.")
    survival_non_responder: Distribution | None = Field(
        default=None, description="Survival of a non-responder, in days from infusion.")
    follow_up_days: Positive | None = Field(
        default=None,
        description="Window, in days from referral, over which life-years and deaths are counted "
                    "(life_years, death_day; metrics life_years_per_referred, deaths_in_follow_up).")

    @model_validator(mode="after")
    def _survival_together(self) -> "AfterInfusion":
        given = [k for k in ("survival_responder", "survival_non_responder", "follow_up_days")
                 if getattr(self, k) is not None]
        if given and len(given) < 3:
            missing = [k for k in ("survival_responder", "survival_non_responder", "follow_up_days")
                       if k not in given]
            raise ValueError("give survival_responder, survival_non_responder and follow_up_days "
                             f"together (missing: {', '.join(missing)})")
        return self

    @property
    def models_survival(self) -> bool:
        return self.follow_up_days is not None


class Bridging(_Model):
    """Bridging therapy given while the patient waits for the product."""

    start_step: Name = Field(
        description="Step of the pathway at which bridging starts: when the patient reaches it "
                    "(before any wait for a slot or a start day), on the first visit only.")
    duration: Distribution = Field(description="Length of the bridging course, in days.")
    hazard_ratio: NonNegative = Field(
        description="Multiplies the death and ineligibility hazards while bridging lasts "
                    "(0.6: 40% lower hazard; above 1 is allowed).")
    cost: NonNegative = Field(default=0.0, description="Charged when bridging starts.")
    toxicity_probability: Probability = Field(
        default=0.0,
        description="Chance that the course causes a toxicity at its end, after which the "
                    "patient is unfit for toxicity_delay days.")
    toxicity_delay: Distribution | None = Field(
        default=None, validate_default=True,
        description="Days the patient is unfit after a toxicity: no screen, apheresis, "
                    "conditioning or infusion step may begin then.")

    _check_duration = field_validator("duration")(_not_never)

    @field_validator("toxicity_delay")
    @classmethod
    def _delay_with_probability(cls, value: DistributionSpec | None,
                                info: ValidationInfo) -> DistributionSpec | None:
        if value is not None:
            return _not_never(value)
        if info.data.get("toxicity_probability", 0.0) > 0:
            raise ValueError("toxicity_probability > 0 needs a toxicity_delay")
        return value


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
                    "starts_per_week / 7).")

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


class Cohort(_Model):
    name: Name
    share: NonNegative = 1.0
    pathway: PathwaySpec
    priority: Annotated[int, NoBool] = 0
    time_to_death: Distribution = Field(default_factory=Never)
    time_to_ineligible: Distribution = Field(default_factory=Never)
    after_infusion: AfterInfusion = Field(default_factory=AfterInfusion)
    bridging: Bridging | None = Field(
        default=None,
        description="Optional bridging therapy: multiplies the disease-clock hazards while it lasts.")

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
    closures: list[Closure] | None = Field(
        default=None,
        description="Date ranges (inclusive) in which no use may start: no slot is taken and "
                    "no step on the site begins. Uses under way continue.")

    @property
    def has_calendar(self) -> bool:
        """Whether the site's capacity or starts depend on the date."""
        return (isinstance(self.slots, list) or bool(self.closures)
                or self.starts_per_month is not None or self.starts_per_week is not None)

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
    description: str | None = None
    start_date: dt.date = dt.date(2025, 1, 6)
    horizon_days: Annotated[float, NoBool, Field(gt=0, le=36500 * 4, allow_inf_nan=False)]
    drain_days: Annotated[float, NoBool, Field(ge=0, le=36500 * 4, allow_inf_nan=False)] = 3650.0
    replications: Annotated[int, NoBool, Field(ge=1, le=1_000_000)] = 100
    seed: Annotated[int, NoBool, Field(ge=0, lt=2**63)] = 12345
    currency: Name = "USD"
    arrivals: Arrivals
    cohorts: list[Cohort] = Field(min_length=1)
    sites: dict[Name, Site] = Field(default_factory=dict)
    pathways: dict[Name, Pathway] = Field(min_length=1)

    def cohort_shares(self) -> list[float]:
        total = sum(c.share for c in self.cohorts)
        return [c.share / total for c in self.cohorts]

    def expected_referrals(self) -> float:
        """Expected referrals per replication (for sizing and refusing absurd runs)."""
        arr = self.arrivals
        if arr.rate_per_year is not None:
            return arr.rate_per_year * self.horizon_days / 365.0
        if arr.schedule is not None:
            return float(sum(1 for t in arr.schedule if t < self.horizon_days))
        return self.horizon_days / arr.interarrival.mean()  # type: ignore[union-attr]


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a scenario file."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ScenarioError(ValueError):
    """A scenario breaks the contract; ``problems`` lists every problem found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


# --------------------------------------------------------------------------- YAML


class _Constructor(RoundTripConstructor):
    """Round-trip constructor that reports unreadable scalars with their line."""

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as exc:  # e.g. 2025-13-45, a 5000-digit integer
            value = node.value if isinstance(node.value, str) else ""
            shown = f" {value[:40]!r}" if value else ""
            raise ConstructorError(None, None, f"cannot read value{shown}: {exc}",
                                   node.start_mark) from None


def _yaml() -> YAML:
    # Round-trip mode keeps line numbers and comments and builds only plain containers
    # and scalars (no tags resolved to Python objects); duplicate keys raise.
    yaml = YAML(typ="rt", pure=True)
    yaml.Constructor = _Constructor
    yaml.allow_duplicate_keys = False
    return yaml


# Tags a scenario may carry explicitly (`!!str 5`); anything else (`!!python/object:...`,
# `!custom`) is refused rather than read as plain data.
_CORE_TAGS = frozenset(
    "tag:yaml.org,2002:" + t
    for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp", "omap", "merge")
)


def _tag_problems(tree: Any) -> list[tuple[list[Any], str]]:
    """Paths of values carrying a non-core YAML tag."""
    out: list[tuple[list[Any], str]] = []
    stack: list[tuple[Any, list[Any]]] = [(tree, [])]
    seen: set[int] = set()
    while stack:
        node, path = stack.pop()
        if id(node) in seen:  # aliases share nodes
            continue
        seen.add(id(node))
        tag = getattr(node, "tag", None)
        value = getattr(tag, "value", None) if tag is not None else None
        if isinstance(node, (CommentedMap, CommentedSeq, TaggedScalar)) and value is not None \
                and value not in _CORE_TAGS:
            shown = value.replace("tag:yaml.org,2002:", "!!")
            out.append((path, f"YAML tag '{shown}' is not allowed in a scenario"))
            continue
        if isinstance(node, Mapping):
            stack.extend((v, path + [k]) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, path + [i]) for i, v in enumerate(node))
    return out


def _count_nodes(node: Any, limit: int) -> int:
    """Count containers and scalars, following aliases: refuses 'billion laughs' documents."""
    count = 0
    stack = [node]
    while stack:
        item = stack.pop()
        count += 1
        if count > limit:
            return count
        if isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def to_plain(node: Any) -> Any:
    """ruamel containers and scalar subclasses -> plain dict/list/str/int/float/bool."""
    if isinstance(node, Mapping):
        return {str(k) if not isinstance(k, (str, int, float, bool)) else k: to_plain(v)
                for k, v in node.items()}
    if isinstance(node, list):
        return [to_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    if isinstance(node, (dt.date, dt.datetime)):
        return node
    if isinstance(node, TaggedScalar):
        return str(node.value)
    return str(node)


def read_yaml(text: str, file: str) -> Any:
    """Parse YAML text into a ruamel tree, raising ScenarioError with line numbers."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        raise ScenarioError([Problem(file, None, "", f"file is larger than {MAX_FILE_BYTES} bytes")])
    try:
        data = _yaml().load(io.StringIO(text))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        col = f" (column {mark.column + 1})" if mark is not None else ""
        what = " ".join(str(x) for x in (exc.context, exc.problem) if x)
        if "duplicate key" in str(exc) or type(exc).__name__ == "DuplicateKeyError":
            what = str(exc.problem or "duplicate key").split("\n")[0]
        raise ScenarioError([Problem(file, line, "", f"YAML error{col}: {what}")]) from None
    except (YAMLError, RecursionError, ValueError) as exc:
        msg = str(exc).split("\n")[0] or type(exc).__name__
        raise ScenarioError([Problem(file, None, "", f"YAML error: {msg}")]) from None
    if _count_nodes(data, 200_000) > 200_000:
        raise ScenarioError([Problem(file, None, "", "document too large (more than 200000 "
                                     "values after expanding aliases)")])
    return data


def _line_of(tree: Any, path: Sequence[Any]) -> int | None:
    """1-based line of the deepest key along ``path`` that exists in the ruamel tree."""
    line = None
    node = tree
    for key in path:
        try:
            if isinstance(node, CommentedMap) and key in node:
                line = node.lc.key(key)[0] + 1
                node = node[key]
                continue
            if isinstance(node, CommentedSeq) and isinstance(key, int) and 0 <= key < len(node):
                line = node.lc.item(key)[0] + 1
                node = node[key]
                continue
        except (KeyError, IndexError, AttributeError, TypeError):
            pass
        break
    if line is None and hasattr(tree, "lc") and tree.lc.line is not None:
        line = tree.lc.line + 1
    return line


_TAGS = frozenset(("number", "never", *DIST_NAMES, "pathway-name", "pathway-rule",
                    "slot-count", "slot-schedule"))


def _clean_loc(raw: Any, loc: Sequence[Any]) -> list[Any]:
    """Drop pydantic's union tags from an error location, keeping the data's own keys."""
    out: list[Any] = []
    node = raw
    for key in loc:
        if isinstance(node, Mapping) and key in node:
            out.append(key)
            node = node[key]
        elif isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
            out.append(key)
            node = node[key]
        elif isinstance(key, str) and key in _TAGS:
            continue
        elif isinstance(key, str) and key.startswith("function-"):
            continue
        else:
            out.append(key)
            node = None
    return out


def _format_path(path: Sequence[Any]) -> str:
    text = ""
    for key in path:
        if isinstance(key, int):
            text += f"[{key}]"
        else:
            text += ("." if text else "") + str(key)
    return text


_FIELDS: dict[type[BaseModel], set[str]] = {}


def _known_keys(path: Sequence[Any]) -> list[str]:
    """Keys allowed where an unknown key was found (for "did you mean")."""
    import typing

    model: Any = Scenario
    skip_name = False  # the next key is a name in a dict of models (sites.NAME)
    for key in path[:-1]:
        if skip_name or isinstance(key, int):
            skip_name = False
            continue
        fields = getattr(model, "model_fields", {})
        by_alias = {f.alias or n: f for n, f in fields.items()}
        if key not in by_alias:
            return []
        ann = by_alias[key].annotation
        skip_name = typing.get_origin(ann) is dict
        model = _inner_model(ann)
        if model is None:
            return []
    fields = getattr(model, "model_fields", {})
    return [f.alias or n for n, f in fields.items()]


def _inner_model(ann: Any) -> Any:
    import types
    import typing

    origin = typing.get_origin(ann)
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    if origin in (list, dict):
        return _inner_model(typing.get_args(ann)[-1])
    if origin is typing.Union or origin is types.UnionType:
        for arg in typing.get_args(ann):
            model = _inner_model(arg)
            if model is not None:
                return model
    if origin is typing.Annotated:
        return _inner_model(typing.get_args(ann)[0])
    return None


_DIST_MODELS: dict[str, type[BaseModel]] = {
    "fixed": _dists.Fixed, "uniform": _dists.Uniform, "triangular": _dists.Triangular,
    "exponential": _dists.Exponential, "lognormal": _dists.Lognormal, "gamma": _dists.Gamma,
    "weibull": _dists.Weibull, "empirical": _dists.Empirical,
}


def _node_at(raw: Any, path: Sequence[Any]) -> Any:
    node = raw
    for key in path:
        if isinstance(node, Mapping) and key in node:
            node = node[key]
        elif isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
            node = node[key]
        else:
            return None
    return node


_BOUNDS = {
    "greater_than": ("gt", "greater than"),
    "greater_than_equal": ("ge", "at least"),
    "less_than": ("lt", "less than"),
    "less_than_equal": ("le", "at most"),
}


def _message(err: Mapping[str, Any], raw: Any, path: list[Any]) -> str:
    kind = err["type"]
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if kind == "extra_forbidden":
        parent = _node_at(raw, path[:-1])
        if isinstance(parent, Mapping) and parent.get("dist") in _DIST_MODELS:
            model = _DIST_MODELS[parent["dist"]]
            known = [f.alias or n for n, f in model.model_fields.items() if n != "dist"]
        else:
            known = _known_keys(path)
        msg = "unknown key"
        if known:
            close = difflib.get_close_matches(str(path[-1]), known, n=1, cutoff=0.6)
            msg += f" (did you mean '{close[0]}'?)" if close else f" (allowed: {', '.join(known)})"
    elif kind == "missing":
        msg = "required key is missing"
    elif kind in ("too_short", "string_too_short") and err.get("ctx", {}).get("min_length") == 1:
        msg = "must not be empty"
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        msg = "must be a mapping of keys to values"
    elif kind in _BOUNDS and isinstance(err.get("ctx"), Mapping):
        # pydantic shows large integer bounds as floats (2**63 as 9223372036854776000).
        ctx_key, words = _BOUNDS[kind]
        bound = err["ctx"][ctx_key]
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        msg = f"must be {words} {bound!r}"
    msg = msg.replace("Input should be", "must be").replace("Value should be", "must be")
    if isinstance(err.get("input"), bool) and kind == "value_error":
        return msg  # the message already says true/false
    if kind == "literal_error" and isinstance(err.get("input"), str):
        allowed = re.findall(r"'([^']*)'", str(err.get("ctx", {}).get("expected", "")))
        close = difflib.get_close_matches(err["input"], allowed, n=1, cutoff=0.6)
        if close:
            return f"{msg} (got {err['input']!r}; did you mean '{close[0]}'?)"
    if kind == "value_error" and (err.get("input") is None or str(err.get("input")) in msg):
        return msg  # our own checks name the value already (or there is none: a default)
    if kind not in ("missing",) and "input" in err and not isinstance(err["input"], (dict, list)):
        shown = str(err["input"]) if isinstance(err["input"], dt.date) else repr(err["input"])
        if len(shown) <= 60 and kind != "extra_forbidden":
            msg += f" (got {shown})"
    return msg


def _reference_problems(raw: Any) -> list[tuple[list[Any], str]]:
    """Cross-reference checks on the raw data, defensive about its shape."""
    out: list[tuple[list[Any], str]] = []
    if not isinstance(raw, Mapping):
        return out
    sites = raw.get("sites") if isinstance(raw.get("sites"), Mapping) else {}
    pathways = raw.get("pathways") if isinstance(raw.get("pathways"), Mapping) else {}
    cohorts = raw.get("cohorts")
    if isinstance(cohorts, list):
        names: set[str] = set()
        for i, cohort in enumerate(cohorts):
            if not isinstance(cohort, Mapping):
                continue
            name = cohort.get("name")
            if isinstance(name, str):
                if name in names:
                    out.append((["cohorts", i, "name"], f"duplicate cohort name '{name}'"))
                names.add(name)
            pw = cohort.get("pathway")
            if isinstance(pw, str) and pathways and pw not in pathways:
                out.append((["cohorts", i, "pathway"], _missing("pathway", pw, pathways)))
            taken = [pw] if isinstance(pw, str) else []
            if isinstance(pw, Mapping):
                out += _rule_problems(pw, ["cohorts", i, "pathway"], pathways, sites)
                taken = [pw.get(k) for k in ("primary", "fallback") if isinstance(pw.get(k), str)]
            bridging = cohort.get("bridging")
            if isinstance(bridging, Mapping) and isinstance(bridging.get("start_step"), str):
                start = bridging["start_step"]
                for name in dict.fromkeys(taken):
                    steps = _step_names(pathways.get(name))
                    if steps is not None and start not in steps:
                        out.append((["cohorts", i, "bridging", "start_step"],
                                    _missing("step", start, steps, name)))
        shares = [c.get("share", 1.0) for c in cohorts if isinstance(c, Mapping)]
        # Negative shares are reported on their own key; here only all-zero shares.
        if cohorts and all(isinstance(s, (int, float)) and not isinstance(s, bool) and s >= 0
                           for s in shares):
            if shares and sum(shares) <= 0:
                out.append((["cohorts"], "cohort shares sum to zero"))
    start_date = _start_date(raw.get("start_date"))
    for sname, site in sites.items():
        if isinstance(site, Mapping) and isinstance(site.get("slots"), list):
            out += _schedule_problems(site["slots"], ["sites", sname, "slots"], start_date)
    for pname, pathway in pathways.items():
        if not isinstance(pathway, Mapping) or not isinstance(pathway.get("steps"), list):
            continue
        steps = pathway["steps"]
        index: dict[str, int] = {}
        for j, step in enumerate(steps):
            if not isinstance(step, Mapping):
                continue
            name = step.get("name")
            base = ["pathways", pname, "steps", j]
            if isinstance(name, str):
                if name in index:
                    out.append((base + ["name"], f"duplicate step name '{name}' in pathway '{pname}'"))
                else:
                    index[name] = j
            site = step.get("site")
            if isinstance(site, str) and site not in sites:
                out.append((base + ["site"], _missing("site", site, sites)))
            res = step.get("reserve_from")
            if isinstance(res, str):
                k = index.get(res)
                if k is None or k == j:
                    if any(isinstance(s, Mapping) and s.get("name") == res for s in steps[j + 1:]):
                        out.append((base + ["reserve_from"],
                                    f"'{res}' comes after this step; reserve_from must name an earlier step"))
                    elif k == j:
                        out.append((base + ["reserve_from"], "reserve_from must name an earlier step, not this one"))
                    else:
                        out.append((base + ["reserve_from"], _missing("step", res, index, pname)))
            onf = step.get("on_failure")
            if isinstance(onf, Mapping) and isinstance(onf.get("retry_from"), str):
                target = onf["retry_from"]
                if target not in index:
                    later = [s.get("name") for s in steps[j + 1:] if isinstance(s, Mapping)]
                    if target in later:
                        out.append((base + ["on_failure", "retry_from"],
                                    f"'{target}' comes after this step; retry_from must name this or an earlier step"))
                    else:
                        out.append((base + ["on_failure", "retry_from"],
                                    _missing("step", target, index, pname)))
        kinds = [s.get("kind") for s in steps if isinstance(s, Mapping)]
        n_inf = kinds.count("infusion")
        if steps and len(kinds) == len(steps):
            if n_inf != 1:
                out.append((["pathways", pname, "steps"],
                            f"a pathway needs exactly one infusion step, found {n_inf}"))
            elif kinds[-1] != "infusion":
                out.append((["pathways", pname, "steps"], "the infusion step must be the last step"))
    return out


def _step_names(pathway: Any) -> list[str] | None:
    if not isinstance(pathway, Mapping) or not isinstance(pathway.get("steps"), list):
        return None
    return [s["name"] for s in pathway["steps"] if isinstance(s, Mapping) and isinstance(s.get("name"), str)]


def _rule_problems(rule: Mapping[str, Any], base: list[Any], pathways: Mapping[str, Any],
                   sites: Mapping[str, Any]) -> list[tuple[list[Any], str]]:
    """A routing rule names two different pathways, and the primary takes a site slot."""
    out: list[tuple[list[Any], str]] = []
    primary, fallback = rule.get("primary"), rule.get("fallback")
    for key, name in (("primary", primary), ("fallback", fallback)):
        if isinstance(name, str) and pathways and name not in pathways:
            out.append((base + [key], _missing("pathway", name, pathways)))
    if isinstance(primary, str) and primary == fallback:
        out.append((base + ["fallback"], "the fallback must differ from the primary pathway"))
    steps = pathways.get(primary) if isinstance(primary, str) else None
    if isinstance(steps, Mapping) and isinstance(steps.get("steps"), list):
        if not any(isinstance(s, Mapping) and isinstance(s.get("site"), str) for s in steps["steps"]):
            out.append((base + ["primary"],
                        f"pathway '{primary}' takes no site slot, so a rule has no queue to measure"))
    return out


def _start_date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    return Scenario.model_fields["start_date"].default


def _schedule_problems(entries: list[Any], base: list[Any], start_date: dt.date) -> list[tuple[list[Any], str]]:
    """A slot schedule starts by start_date, goes forward in time and has some capacity."""
    out: list[tuple[list[Any], str]] = []
    days: list[tuple[int, int]] = []
    for k, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            continue
        when = entry.get("from")
        if isinstance(entry.get("from_day"), int) and not isinstance(entry.get("from_day"), bool):
            day = entry["from_day"]
        elif isinstance(when, dt.date) and not isinstance(when, dt.datetime):
            day = (when - start_date).days
        elif isinstance(when, str):
            try:
                day = (dt.date.fromisoformat(when) - start_date).days
            except ValueError:
                continue
        else:
            continue
        if days and day <= days[-1][1]:
            out.append((base + [k], f"must start after the previous entry (day {day} is not "
                                    f"after day {days[-1][1]})"))
        days.append((k, day))
    if days and days[0][0] == 0 and days[0][1] > 0:
        out.append((base + [0], f"the first entry must start on or before start_date "
                                f"({start_date}); it starts on day {days[0][1]}"))
    counts = [e.get("slots") for e in entries if isinstance(e, Mapping)]
    if counts and all(isinstance(c, int) and not isinstance(c, bool) and c == 0 for c in counts):
        out.append((base, "every entry has 0 slots: the site could never be used"))
    return out


def _missing(what: str, name: str, known: Iterable[str], pathway: str | None = None) -> str:
    known = list(known)
    where = f" in pathway '{pathway}'" if pathway else ""
    msg = f"no {what} named '{name}'{where}"
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        msg += f" (did you mean '{close[0]}'?)"
    elif known:
        msg += f" (known: {', '.join(known)})"
    return msg


def scenario_from_dict(data: Any, file: str = "<scenario>", tree: Any = None) -> Scenario:
    """Validate plain data (as loaded from YAML) into a :class:`Scenario`."""
    raw = to_plain(data)
    tree = data if tree is None else tree
    problems: list[Problem] = []
    if not isinstance(raw, Mapping):
        raise ScenarioError([Problem(file, 1, "", "a scenario must be a mapping of keys to values")])
    scenario: Scenario | None = None
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            path = _clean_loc(raw, err["loc"])
            problems.append(Problem(file, _line_of(tree, path), _format_path(path),
                                    _message(err, raw, path)))
    for path, msg in _reference_problems(raw):
        problems.append(Problem(file, _line_of(tree, path), _format_path(path), msg))
    if scenario is not None and not problems:
        # What validates must also run: the engine's preconditions (see .compile).
        from .compile import precondition_problems
        for path, msg in precondition_problems(scenario):
            problems.append(Problem(file, _line_of(tree, path), _format_path(path), msg))
    tagged = _tag_problems(tree)
    if tagged:
        # The tag is the problem; what pydantic says about the tagged value is noise.
        prefixes = [_format_path(path) for path, _ in tagged]
        problems = [p for p in problems if p.message.startswith("unknown key")
                    or not any(p.path == q or p.path.startswith((q + ".", q + "[")) for q in prefixes)]
        problems += [Problem(file, _line_of(tree, path), _format_path(path), msg)
                     for path, msg in tagged]
    if problems:
        # One line per problem, in file order.
        unique = list(dict.fromkeys(problems))
        unique.sort(key=lambda p: (p.line if p.line is not None else 0))
        raise ScenarioError(unique)
    assert scenario is not None
    return scenario


def load_scenario(path: str | Path, text: str | None = None) -> Scenario:
    """Load and validate a scenario file; raises :class:`ScenarioError` listing every problem."""
    file = str(path)
    if text is None:
        try:
            size = Path(path).stat().st_size
            if size > MAX_FILE_BYTES:
                raise ScenarioError([Problem(file, None, "", f"file is larger than {MAX_FILE_BYTES} bytes")])
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ScenarioError([Problem(file, None, "", "no such file")]) from None
        except IsADirectoryError:
            raise ScenarioError([Problem(file, None, "", "is a directory, not a scenario file")]) from None
        except UnicodeDecodeError as exc:
            raise ScenarioError([Problem(file, None, "", f"not UTF-8 text ({exc.reason})")]) from None
        except OSError as exc:
            raise ScenarioError([Problem(file, None, "", f"cannot read: {exc.strerror}")]) from None
    tree = read_yaml(text, file)
    if tree is None:
        raise ScenarioError([Problem(file, 1, "", "the file is empty")])
    return scenario_from_dict(tree, file, tree)


def scenario_to_dict(scenario: Scenario) -> dict[str, Any]:
    """The fully resolved scenario as plain data (distributions in explicit form)."""

    def dump(value: Any) -> Any:
        if isinstance(value, DistributionSpec):
            return value.to_yaml()
        if isinstance(value, BaseModel):
            out = {}
            for name, field in type(value).model_fields.items():
                item = getattr(value, name)
                if item is None:
                    continue
                out[field.alias or name] = dump(item)
            return out
        if isinstance(value, dict):
            return {k: dump(v) for k, v in value.items()}
        if isinstance(value, list):
            return [dump(v) for v in value]
        if isinstance(value, float) and value.is_integer() and math.isfinite(value):
            return int(value) if abs(value) < 2**53 else value
        return value

    return dump(scenario)


def scenario_to_yaml(scenario: Scenario, **extra: Any) -> str:
    """YAML text of the resolved scenario; ``extra`` keys override (e.g. seed, replications)."""
    data = scenario_to_dict(scenario)
    data.update(extra)
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[attr-defined]
    buf = io.StringIO()
    yaml.dump(data, buf)
    return buf.getvalue()
