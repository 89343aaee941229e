"""v2vsim: discrete-event simulation of the vein-to-vein logistics of autologous CAR-T therapy.

>>> import v2vsim
>>> sc = v2vsim.load_scenario("scenarios/local.yaml")          # doctest: +SKIP
>>> res = v2vsim.simulate(sc, replications=200, seed=1)         # doctest: +SKIP
>>> res.summary()                                               # doctest: +SKIP
>>> cmp = v2vsim.compare(["scenarios/local.yaml", "scenarios/overseas.yaml"])  # doctest: +SKIP
>>> cmp.table                                                    # doctest: +SKIP
"""

from .experiments.compare import Comparison, compare
from .engine.runner import Results, simulate
from ._version import __version__
from .scenario import Scenario, ScenarioError, load_scenario

__all__ = ["Comparison", "Results", "Scenario", "ScenarioError", "compare", "load_scenario", "simulate", "__version__"]
