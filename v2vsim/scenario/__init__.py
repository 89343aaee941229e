"""The scenario contract: what a scenario file may say, how it is read, and how it is checked.

``load_scenario`` reads YAML with line numbers, validates it strictly and reports every
problem as ``FILE:LINE: key.path: message``; distributions are in :mod:`.distributions`.
"""

from .schema import *  # noqa: F401,F403
from .schema import __all__ as _schema_all
from .schema import DAYS_PER_YEAR, read_yaml, scenario_to_dict, to_plain

__all__ = [*_schema_all, "DAYS_PER_YEAR", "read_yaml", "scenario_to_dict", "to_plain"]
