"""The scenario contract: what a scenario file may say, how it is read, and how it is checked.

``load_scenario`` reads YAML with line numbers, validates it strictly and reports every
problem as ``FILE:LINE: key.path: message``. The pieces, lowest first: :mod:`.distributions`,
:mod:`.schema` (the pydantic models), :mod:`.errors` (``Problem``, ``ScenarioError``),
:mod:`.yaml_io` (reading and writing YAML), :mod:`.messages` (pydantic's errors in our words),
:mod:`.references` (cross-reference checks), :mod:`.loading` (all of them together) and
:mod:`.overrides` (``--set PATH=VALUE`` variants of a scenario file).
"""

from .errors import Problem, ScenarioError
from .loading import load_scenario, scenario_from_dict
from .schema import (
    DAYS_PER_YEAR,
    OUTCOME_BY_KIND,
    OUTCOMES,
    STEP_KINDS,
    WEEKDAYS,
    Bridging,
    Closure,
    Cohort,
    Pathway,
    PathwayRule,
    Scenario,
    Site,
    SlotChange,
    Step,
)
from .yaml_io import read_yaml, scenario_to_dict, scenario_to_yaml, to_plain

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
    "DAYS_PER_YEAR",
    "read_yaml",
    "scenario_to_dict",
    "to_plain",
]
