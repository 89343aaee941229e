"""Every module of the package is imported before the tests run.

Hypothesis mixes constants found in the project's loaded modules into what it draws, so even a
derandomized test's examples would depend on which modules earlier tests happened to import
(the differential tests' examples, and the features they reach, changed with the order of the
files). With every module loaded first, a test draws the same examples alone or in the suite.
"""

from __future__ import annotations

import importlib
import pkgutil

import v2vsim

for _module in pkgutil.walk_packages(v2vsim.__path__, "v2vsim."):
    # __main__ runs nothing but is the entry point; app._script draws the page when imported.
    if _module.name not in ("v2vsim.__main__", "v2vsim.app._script"):
        importlib.import_module(_module.name)
