"""v2vsim: discrete-event simulation of the vein-to-vein logistics of autologous CAR-T therapy.

>>> import v2vsim
>>> sc = v2vsim.load_scenario("scenarios/local.yaml")          # doctest: +SKIP
>>> res = v2vsim.simulate(sc, replications=200, seed=1)         # doctest: +SKIP
>>> res.summary()                                               # doctest: +SKIP
>>> cmp = v2vsim.compare(["scenarios/local.yaml", "scenarios/overseas.yaml"])  # doctest: +SKIP
>>> cmp.table                                                    # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._version import __version__
    from .engine.runner import Results, simulate
    from .experiments.compare import Comparison, compare
    from .scenario import Scenario, ScenarioError, load_scenario

__all__ = ["Comparison", "Results", "Scenario", "ScenarioError", "compare", "load_scenario", "simulate", "__version__"]


def __getattr__(name: str) -> Any:
    # The public names are imported on first use, so that importing a subpackage (the command
    # line's ``v2vsim.cli`` above all) does not import the simulation stack with them.
    if name in ("Comparison", "compare"):
        from .experiments.compare import Comparison, compare

        globals().update(Comparison=Comparison, compare=compare)
    elif name in ("Results", "simulate"):
        from .engine.runner import Results, simulate

        globals().update(Results=Results, simulate=simulate)
    elif name in ("Scenario", "ScenarioError", "load_scenario"):
        from .scenario import Scenario, ScenarioError, load_scenario

        globals().update(Scenario=Scenario, ScenarioError=ScenarioError, load_scenario=load_scenario)
    elif name == "__version__":
        from ._version import __version__

        globals()["__version__"] = __version__
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return globals()[name]


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
