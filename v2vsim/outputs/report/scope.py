"""What a scenario simulates and what it leaves out, in words for the report's method section.

The statements are read from the resolved scenario (``scenario.yaml`` of a run directory), so a
report never says "disease course after infusion is not simulated" of a scenario that simulates
survival after infusion, or "the clocks do not depend on bridging" of one with bridging therapy.
:func:`scenario_features` says which optional parts of the model a scenario uses;
:func:`scope_context` turns the features of every scenario of a report into the scope, the
assumptions and the limitations (what the model does not represent), naming the scenarios a
statement applies to when they differ.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .describe import describe_dist
from .table import _finite

__all__ = ["scenario_features", "scope_context"]


def _cohorts(scenario: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [c for c in scenario.get("cohorts") or [] if isinstance(c, Mapping)]


def _after(cohort: Mapping[str, Any]) -> Mapping[str, Any]:
    after = cohort.get("after_infusion")
    return after if isinstance(after, Mapping) else {}


def _never(spec: Any) -> bool:
    return spec is None or spec == "never"


def _wait_effect(cohort: Mapping[str, Any]) -> Mapping[str, Any] | None:
    effect = _after(cohort).get("wait_effect")
    if not isinstance(effect, Mapping):
        return None
    ratios = [effect.get("response_odds_ratio", 1), effect.get("survival_hazard_ratio", 1)]
    return effect if any(_finite(r) and float(r) != 1.0 for r in ratios) else None


def _steps(scenario: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [s for p in (scenario.get("pathways") or {}).values() if isinstance(p, Mapping)
            for s in p.get("steps") or [] if isinstance(s, Mapping)]


def _sites(scenario: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(k): v for k, v in (scenario.get("sites") or {}).items() if isinstance(v, Mapping)}


def scenario_features(scenario: Mapping[str, Any]) -> dict[str, bool]:
    """Which optional parts of the model a resolved scenario uses (one flag per part)."""
    cohorts = _cohorts(scenario)
    economics = scenario.get("economics")
    sites = _sites(scenario)
    return {
        "survival": any(_after(c).get("survival_responder") is not None for c in cohorts),
        "response": any(_finite(_after(c).get("response_probability")) and
                        float(_after(c)["response_probability"]) > 0 for c in cohorts),
        "icu": any(_finite(_after(c).get("icu_probability")) and
                   float(_after(c)["icu_probability"]) > 0 for c in cohorts),
        "wait_effect": any(_wait_effect(c) is not None for c in cohorts),
        "bridging": any(isinstance(c.get("bridging"), Mapping) for c in cohorts),
        "routing": any(isinstance(c.get("pathway"), Mapping) for c in cohorts),
        "economics": isinstance(economics, Mapping),
        "life_table": isinstance(economics, Mapping) and economics.get("life_table") is not None,
        "death_clock": any(not _never(c.get("time_to_death")) for c in cohorts),
        "ineligible_clock": any(not _never(c.get("time_to_ineligible")) for c in cohorts),
        "shelf_life": any(s.get("shelf_life") is not None for s in _steps(scenario)),
        "allocation": any(s.get(k) is not None for s in sites.values()
                          for k in ("starts_per_month", "starts_per_week", "starts_per_day")),
        "capacity_changes": any(isinstance(s.get("slots"), list) or s.get("closures")
                                for s in sites.values()),
        "sites": bool(sites),
        "backlog": bool(scenario.get("backlog")),
        "queue_order": any(_queue_order(s) != "request" for s in sites.values()),
        "re_referral": any(isinstance(c.get("re_referral"), Mapping) for c in cohorts),
    }


def _queue_order(site: Mapping[str, Any]) -> str:
    queue = site.get("queue")
    return str(queue.get("order", "request")) if isinstance(queue, Mapping) else "request"


def _waitlist_statements(scenario: Mapping[str, Any], scope: list[str], assumptions: list[str]) -> None:
    """The scope of a starting backlog, a queue order and re-referral (see docs: Waitlists)."""
    backlog = scenario.get("backlog")
    if backlog:
        count = backlog if isinstance(backlog, int) else sum(
            int(e.get("count", 1)) for e in backlog if isinstance(e, Mapping))
        scope.append(f"The run starts from a list of {count:,} patients already waiting at day 0, their "
                     "disease clocks conditioned on the days they had waited; their times are counted "
                     "from day 0.")
    words = {"referral": "earliest referral first (date of eligibility)",
             "sickest_first": "sickest first (shortest remaining untreated survival)",
             "most_benefit": "most likely to benefit first (highest chance of response)"}
    for name, site in _sites(scenario).items():
        order = _queue_order(site)
        if order == "request":
            continue
        error = site["queue"].get("estimate_error", 0)
        label = site.get("label") or name
        text = f"{label} serves its queue {words.get(order, order)}, after cohort priority"
        if order == "sickest_first" and _finite(error) and float(error) > 0:
            text += (f", by a committee's estimate of remaining survival (a lognormal error of "
                     f"{float(error):g} on the log scale)")
        elif order == "sickest_first":
            assumptions.append(f"{label}'s sickest-first order knows each patient's exact remaining "
                               "survival, which a real committee can only estimate")
        scope.append(text + ".")
    for c in _cohorts(scenario):
        rule = c.get("re_referral")
        if isinstance(rule, Mapping):
            scope.append(f"Patients of {c.get('label') or c.get('name')} who wait "
                         f"{float(rule.get('after_days', 0)):g} days for a slot leave the list for the "
                         f"{rule.get('pathway')} pathway.")


def _names(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _pct(value: Any) -> str:
    return f"{100 * float(value):.3g}%" if _finite(value) else "–"


def _follow_up(scenario: Mapping[str, Any], cohort: Mapping[str, Any]) -> str:
    economics = scenario.get("economics")
    if isinstance(economics, Mapping) and economics.get("follow_up_years") is not None:
        years = economics["follow_up_years"]
        return "a lifetime follow-up" if years == "lifetime" else f"a follow-up of {float(years):g} years"
    days = _after(cohort).get("follow_up_days")
    return f"a follow-up of {float(days):,.0f} days from referral" if _finite(days) else "the follow-up"


def _statements(scenario: Mapping[str, Any]) -> dict[str, list[str]]:
    """The scope, assumption and limitation sentences of one scenario."""
    f = scenario_features(scenario)
    cohorts = _cohorts(scenario)
    scope: list[str] = []
    assumptions: list[str] = []
    limits: list[str] = []

    # After infusion.
    drawn = [w for w, on in (("response", f["response"]), ("ICU admission", f["icu"])) if on]
    drawn_text = f"{' and '.join(drawn)} {'is' if len(drawn) == 1 else 'are'} drawn as probabilities at infusion" \
        if drawn else "no response or ICU admission is drawn at infusion"
    if f["survival"]:
        with_survival = [c for c in cohorts if _after(c).get("survival_responder") is not None]
        first = with_survival[0]
        cure = [c for c in with_survival if _finite(_after(c).get("cure_fraction"))
                and float(_after(c)["cure_fraction"]) > 0]
        text = (f"After infusion, {drawn_text}, and survival after infusion is simulated: a survival "
                "distribution for responders and one for non-responders"
                + (f", with a cure fraction among responders ({_names([str(c.get('name')) for c in cure])})"
                   if cure else "")
                + f", from which life-years and deaths are counted within {_follow_up(scenario, first)}")
        without = [str(c.get("name")) for c in cohorts if c not in with_survival]
        if without:
            text += f"; for {_names(without)} the disease course after infusion is not simulated"
        scope.append(text + ".")
        if not f["life_table"]:
            limits.append("Background (non-disease) mortality: without a life table, deaths after "
                          "infusion come from the survival distributions only"
                          + (" and cured patients do not die within the follow-up" if cure else "") + ".")
    else:
        scope.append(f"Outcomes after infusion: {drawn_text}; the disease course after infusion "
                     "(survival, relapse, life-years) is not simulated.")
        limits.append("Survival and relapse after infusion, and so life-years gained: the report's "
                      "outcomes end at infusion or loss.")
    if f["wait_effect"]:
        parts = []
        for c in cohorts:
            e = _wait_effect(c)
            if e is None:
                continue
            per = float(e.get("per_days", 30))
            parts.append(f"{c.get('name')}: odds of response x{float(e.get('response_odds_ratio', 1)):g}"
                         f" and hazard of death after infusion x{float(e.get('survival_hazard_ratio', 1)):g}"
                         f" per {per:g} days from referral to infusion")
        scope.append("The wait changes the benefit of the infusion (" + "; ".join(parts) + ").")
    elif f["response"] or f["survival"]:
        assumptions.append("the benefit of an infusion (response" + (", survival" if f["survival"] else "")
                           + ") does not depend on how long the patient waited for it")

    # Disease clocks and bridging.
    if f["bridging"]:
        parts = []
        for c in cohorts:
            b = c.get("bridging")
            if not isinstance(b, Mapping):
                continue
            length = ("until the patient leaves the pathway (infused or not)" if b.get("duration") == "until_infusion"
                      else f"course length {describe_dist(b.get('duration'))}")
            text = (f"{c.get('name')}: from step {b.get('start_step')}, hazard ratio "
                    f"{float(b.get('hazard_ratio', 1)):g}, {length}")
            if _finite(b.get("cost_per_day")) and float(b["cost_per_day"]) > 0:
                text += f", {float(b['cost_per_day']):,.0f} a day"
            if _finite(b.get("toxicity_probability")) and float(b["toxicity_probability"]) > 0:
                text += (f"; a toxicity in {_pct(b['toxicity_probability'])} of courses leaves the "
                         f"patient unfit for {describe_dist(b.get('toxicity_delay'))}")
            parts.append(text)
        scope.append("Bridging therapy while waiting multiplies the death and ineligibility hazards "
                     "for the length of its course (" + "; ".join(parts) + ").")
        assumptions.append("the disease clocks are drawn at referral and change only through bridging "
                           "therapy's hazard ratio while it lasts, not with the time already spent waiting")
        without = [str(c.get("name")) for c in cohorts if not isinstance(c.get("bridging"), Mapping)]
        if without:
            limits.append(f"Bridging therapy for {_names(without)}.")
    else:
        assumptions.append("the disease clocks are drawn at referral and do not depend on time "
                           "already spent waiting; no bridging therapy is given while waiting")
        limits.append("Bridging therapy while waiting (its effect on the disease clocks, its "
                      "toxicity and its cost).")
    if not f["death_clock"]:
        limits.append("Death while waiting: no cohort has a time-to-death clock.")
    if not f["ineligible_clock"]:
        limits.append("Becoming ineligible while waiting: no cohort has a time-to-ineligible clock.")

    # Routing, capacity and product.
    if f["routing"]:
        rules = []
        for c in cohorts:
            rule = c.get("pathway")
            if not isinstance(rule, Mapping):
                continue
            when = rule.get("when") if isinstance(rule.get("when"), Mapping) else {}
            if when.get("waiting_more_than") is not None:
                test = f"more than {when['waiting_more_than']} patients wait for a slot"
            else:
                test = f"the expected wait for a slot exceeds {float(when.get('expected_wait_more_than_days', 0)):g} days"
            rules.append(f"{c.get('name')} takes {rule.get('fallback')} instead of {rule.get('primary')} "
                         f"when, at referral, {test}")
        scope.append("Patients are routed at referral (" + "; ".join(rules) + "); the choice is not revisited later.")
    else:
        limits.append("Rerouting to another pathway or manufacturer when the service is congested.")
    _waitlist_statements(scenario, scope, assumptions)
    if f["sites"] and not f["capacity_changes"]:
        limits.append("Changes in capacity over time (closures, added or removed slots): each site "
                      "keeps its slots for the whole run.")
    if not f["shelf_life"]:
        limits.append("Product expiry: no step sets a shelf life.")
    if f["economics"]:
        economics = scenario["economics"]
        discount = economics.get("discount") if isinstance(economics.get("discount"), Mapping) else {}
        rates = ", ".join(f"{_pct(discount[k])} a year for {k}" for k in ("costs", "outcomes")
                          if _finite(discount.get(k)))
        scope.append("A health-economic evaluation counts costs, life-years and QALYs per referred "
                     f"patient over {_follow_up(scenario, cohorts[0] if cohorts else {})}"
                     + (f", discounted at {rates}" if rates else "")
                     + (", with background mortality from a life table" if f["life_table"] else "") + ".")
    else:
        limits.append("Quality of life, costs after the pathway and discounting: costs are those of "
                      "the pathway's steps and sites, with no health-economic evaluation.")
    warmup = scenario.get("warmup_days")
    if _finite(warmup) and float(warmup) > 0:
        scope.append(f"The first {float(warmup):,.0f} days are a warm-up: patients referred in them "
                     "are simulated and hold slots, and are kept in patients.parquet, but no metric, "
                     "table or figure counts them; sites' utilisation is measured from the warm-up's "
                     "end and counts a year are over the remaining days of referrals.")
        limits.append("The warm-up is not applied to the traced patients' journeys (the first "
                      "replication's first patients) or, with economics, to the budget impact by "
                      "calendar year, which count every patient.")
    # Structural: true of every scenario the model runs.
    limits += [
        "Staff, transport and other resources beyond the sites' slots: a step's duration does not "
        "depend on load.",
        "Referrals that depend on the state of the service (fewer referrals when waits are long).",
        "Correlated failures: each step's failure is drawn independently of other steps and attempts.",
        "Clinical judgement beyond the rules: patients leave the pathway only through the outcomes "
        "of the results table, and are served by cohort priority, then "
        + ("each site's queue order." if f["queue_order"] else "first come first served."),
    ]
    assumptions.append("a step's duration does not depend on load")
    assumptions.append("failures are independent between steps and attempts")
    assumptions.insert(0, "referrals arrive independently of the system's state")
    return {"scope": scope, "assumptions": assumptions, "limitations": limits}


def _merge(per_run: Sequence[tuple[str, list[str]]]) -> list[dict[str, Any]]:
    """Statements in first-seen order, each with the scenarios it applies to ([] for all)."""
    order: list[str] = []
    where: dict[str, list[str]] = {}
    for label, texts in per_run:
        for text in texts:
            if text not in where:
                order.append(text)
                where[text] = []
            where[text].append(label)
    everyone = [label for label, _ in per_run]
    return [{"text": t, "scenarios": [] if where[t] == everyone else where[t]} for t in order]


def scope_context(runs: Sequence[tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """Scope, assumptions and limitations of ``(label, resolved scenario)`` pairs, merged."""
    statements = [(label, _statements(scenario)) for label, scenario in runs]
    return {part: _merge([(label, s[part]) for label, s in statements])
            for part in ("scope", "assumptions", "limitations")} | {
        "features": {label: scenario_features(scenario) for label, scenario in runs}}
