"""v2vsim: discrete-event simulation of the vein-to-vein logistics of autologous CAR-T therapy.

>>> import v2vsim
>>> sc = v2vsim.load_scenario("scenarios/local.yaml")          # doctest: +SKIP
>>> res = v2vsim.simulate(sc, replications=200, seed=1)         # doctest: +SKIP
>>> res.summary()                                               # doctest: +SKIP
>>> cmp = v2vsim.compare(["scenarios/local.yaml", "scenarios/overseas.yaml"])  # doctest: +SKIP
>>> cmp.table                                                    # doctest: +SKIP
"""

from importlib.metadata import PackageNotFoundError, version

from .compare import Comparison, compare
from .runner import Results, simulate
from .scenario import Scenario, ScenarioError, load_scenario

try:
    __version__ = version("v2vsim")
except PackageNotFoundError:  # running from a checkout without installing
    __version__ = "0.0.0+checkout"

__all__ = ["Comparison", "Results", "Scenario", "ScenarioError", "compare", "load_scenario", "simulate", "__version__"]
