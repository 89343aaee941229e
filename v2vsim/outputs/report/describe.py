"""The scenario in words for the report's method section (STRESS-DES section 2): cohorts,
sites, pathways and arrivals as table rows, distributions with their means."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

from ...scenario.distributions import Distribution
from .sources import format_yaml_value
from .table import _finite

__all__ = ["describe_dist", "scenario_logic"]

_DIST_WORDS = {"fixed": "fixed", "uniform": "uniform", "triangular": "triangular",
               "exponential": "exponential", "lognormal": "lognormal", "gamma": "gamma",
               "weibull": "Weibull", "empirical": "empirical"}
_DIST_ADAPTER: TypeAdapter[Any] = TypeAdapter(Distribution)


def describe_dist(spec: Any, unit: str = "d") -> str:
    """``Weibull (shape 0.56, median 365); mean 586 d`` for a distribution spec."""
    if spec is None:
        return "–"
    if spec == "never":
        return "never"
    if isinstance(spec, bool) or not isinstance(spec, (int, float, dict)):
        return str(spec)
    if isinstance(spec, (int, float)):
        return f"{spec:g} {unit}"
    kind = str(spec.get("dist", "?"))
    if kind == "fixed":
        return f"{float(spec.get('value', 0)):g} {unit}"
    params = ", ".join(f"{k} {format_yaml_value(v)}" for k, v in spec.items() if k != "dist")
    text = f"{_DIST_WORDS.get(kind, kind)} ({params})"
    try:
        mean = float(_DIST_ADAPTER.validate_python(spec).mean())
    except (ValidationError, ValueError, TypeError, ArithmeticError, AttributeError):
        mean = math.nan
    if math.isfinite(mean):
        text += f"; mean {_num(mean)} {unit}"
    return text


def _num(value: float) -> str:
    """Three significant figures without exponents: 0.188, 12.5, 586, 1,160."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    magnitude = int(math.floor(math.log10(abs(value))))
    decimals = max(0, 2 - magnitude)
    text = f"{round(value, 2 - magnitude):,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if decimals else text


def _pct(value: Any) -> str:
    return f"{100 * float(value):.3g}%" if _finite(value) else "–"


def _money(value: Any, currency: str) -> str:
    return f"{currency} {float(value):,.0f}".strip() if _finite(value) else "–"


def _days_list(days: Any) -> str:
    """``Mon–Fri`` for runs of three or more consecutive weekdays, else ``Mon, Wed``."""
    if not days:
        return "any day"
    order = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    index = sorted({order.index(d) for d in days if d in order})
    runs: list[list[int]] = []
    for i in index:
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    parts = []
    for run in runs:
        names = [order[i].capitalize() for i in run]
        parts.append(f"{names[0]}–{names[-1]}" if len(run) >= 3 else ", ".join(names))
    return ", ".join(parts)


def scenario_logic(scenario: Mapping[str, Any]) -> dict[str, Any]:
    """Cohorts, sites and pathways of a resolved scenario as table rows (plain strings)."""
    currency = str(scenario.get("currency", ""))
    cohorts = [c for c in scenario.get("cohorts") or [] if isinstance(c, Mapping)]
    total = sum(float(c.get("share", 1.0)) for c in cohorts) or 1.0
    cohort_rows = []
    for c in cohorts:
        after = c.get("after_infusion") or {}
        cohort_rows.append({
            "name": str(c.get("name", "")),
            "share": _pct(float(c.get("share", 1.0)) / total),
            "pathway": str(c.get("pathway", "")),
            "priority": str(c.get("priority", 0)),
            "death": describe_dist(c.get("time_to_death", "never")),
            "ineligible": describe_dist(c.get("time_to_ineligible", "never")),
            "response": _pct(after.get("response_probability", 0)),
            "icu": _pct(after.get("icu_probability", 0)),
        })
    site_rows = []
    for name, s in (scenario.get("sites") or {}).items():
        if not isinstance(s, Mapping):
            continue
        site_rows.append({
            "name": str(name), "slots": str(s.get("slots", "")),
            "starts_on": _days_list(s.get("starts_on")),
            "cost_per_use": _money(s.get("cost_per_use", 0), currency),
            "fixed_cost": _money(s.get("fixed_cost_per_year", 0), currency),
        })
    pathways = []
    for pname, pathway in (scenario.get("pathways") or {}).items():
        steps = []
        for i, s in enumerate((pathway or {}).get("steps") or []):
            if not isinstance(s, Mapping):
                continue
            failure = float(s.get("failure_probability", 0) or 0)
            on_failure = s.get("on_failure")
            if failure > 0 and isinstance(on_failure, Mapping):
                fail_text = (f"{_pct(failure)}; retry from {on_failure.get('retry_from')} "
                             f"(at most {on_failure.get('max_attempts')} attempts)")
            elif failure > 0:
                fail_text = f"{_pct(failure)}; the patient drops out"
            else:
                fail_text = "–"
            extra = []
            if s.get("shelf_life") is not None:
                extra.append(f"shelf life {float(s['shelf_life']):g} d")
                if isinstance(on_failure, Mapping) and failure == 0:
                    fail_text = (f"expiry: retry from {on_failure.get('retry_from')} "
                                 f"(at most {on_failure.get('max_attempts')} attempts)")
            if s.get("starts_on"):
                extra.append(f"starts {_days_list(s['starts_on'])}")
            site = str(s.get("site") or "")
            if site and s.get("reserve_from"):
                site += f" (booked before {s['reserve_from']})"
            steps.append({
                "number": str(i + 1), "name": str(s.get("name", "")), "kind": str(s.get("kind", "")),
                "duration": describe_dist(s.get("duration", 0)), "site": site or "–",
                "failure": fail_text, "cost": _money(s.get("cost", 0), currency),
                "notes": "; ".join(extra) or "–",
            })
        pathways.append({"name": str(pname), "steps": steps})
    arrivals = scenario.get("arrivals") or {}
    if arrivals.get("rate_per_year") is not None:
        arrival_text = f"Poisson referrals, {float(arrivals['rate_per_year']):g} a year"
    elif arrivals.get("interarrival") is not None:
        arrival_text = f"referrals with interarrival times {describe_dist(arrivals['interarrival'])}"
    elif arrivals.get("schedule") is not None:
        arrival_text = f"{len(arrivals['schedule'])} referrals on fixed days (the same in every replication)"
    else:
        arrival_text = "–"
    return {"cohorts": cohort_rows, "sites": site_rows, "pathways": pathways,
            "arrivals": arrival_text}
