"""Checks that span several keys of a scenario: names that must refer to something that exists.

Cohorts name pathways, steps name sites and earlier steps, bridging names a step of every
pathway the cohort may take, slot schedules go forward from the start date. pydantic checks
each value on its own; these checks read the raw data, so they run (and are reported together
with pydantic's problems) even when some other part of the file is invalid.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import did_you_mean
from .schema import Scenario

__all__ = ["reference_problems"]


def reference_problems(raw: Any) -> list[tuple[list[Any], str]]:
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
            rr = cohort.get("re_referral")
            if isinstance(rr, Mapping):
                to = rr.get("pathway")
                if not isinstance(pw, str):
                    out.append((["cohorts", i, "re_referral"],
                                "re-referral needs the cohort's pathway by name (not a routing rule)"))
                elif isinstance(to, str) and to == pw:
                    out.append((["cohorts", i, "re_referral", "pathway"],
                                "must differ from the cohort's pathway"))
                if isinstance(to, str) and pathways and to not in pathways:
                    out.append((["cohorts", i, "re_referral", "pathway"], _missing("pathway", to, pathways)))
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
    backlog = raw.get("backlog")
    if isinstance(backlog, list) and isinstance(cohorts, list):
        known = [c.get("name") for c in cohorts if isinstance(c, Mapping) and isinstance(c.get("name"), str)]
        for k, entry in enumerate(backlog):
            name = entry.get("cohort") if isinstance(entry, Mapping) else None
            if isinstance(name, str) and name not in known:
                out.append((["backlog", k, "cohort"], _missing("cohort", name, known)))
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
    where = f" in pathway '{pathway}'" if pathway else ""
    return f"no {what} named '{name}'{where}" + did_you_mean(name, known)
