"""The executive summary at the top of the report, in plain words and generated from the numbers.

For a comparison: what was compared, then each scenario's difference from the baseline in the
main metrics with its paired 95% CI, and whether that interval excludes zero ("statistically
clear") or not ("no clear difference"). For one run: the key numbers as sentences. Nothing is
written by hand: every number comes from the table the report shows, every verdict from its
interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from ...metrics import PER_100, count_of_rate, format_value, per_year
from .table import _MINUS, _finite, count_a_year

__all__ = ["SUMMARY_METRICS", "executive_summary"]

#: Metrics the summary speaks of, in this order (each when the table has it and it is not zero
#: in every scenario).
SUMMARY_METRICS = ("infused_fraction", "died_per_100_referred", "vein_to_vein_median",
                   "queue_wait_mean", "rerouted_per_100_referred",
                   "life_years_per_referred", "cost_per_infused", "qalys_discounted_per_referred",
                   "cost_discounted_per_referred")

#: metric -> (difference from the baseline: "... {x} {m} ...", single run: "... {x} ...", kind);
#: ``{m}`` is more/fewer, longer/shorter or more/less by the sign of the difference.
_PHRASES: dict[str, tuple[str, str, str]] = {
    "infused_fraction": ("infused {x} {m} patients per 100 referred",
                         "{x} of every 100 referred patients were infused", "per100"),
    "died_per_100_referred": ("{x} {m} patients per 100 referred died before infusion",
                              "{x} of every 100 referred patients died before infusion", "rate"),
    "rerouted_per_100_referred": (
        "{x} {m} patients per 100 referred were routed to the fallback pathway",
        "{x} of every 100 referred patients were routed to the fallback pathway", "rate"),
    # Counts of results written without their rates.
    "died": ("{x} {m} patients per replication died before infusion",
             "{x} patients per replication died before infusion", "count"),
    "vein_to_vein_median": ("the median vein-to-vein time was {x} days {m}",
                            "the median vein-to-vein time was {x} days", "days"),
    "queue_wait_mean": ("patients waited {x} {m} days on average for a slot or a start day",
                        "patients waited {x} days on average for a slot or a start day", "wait"),
    "rerouted": ("{x} {m} patients per replication were routed to the fallback pathway",
                 "{x} patients per replication were routed to the fallback pathway", "count"),
    "life_years_per_referred": ("each referred patient lived {x} {m} years on average within the follow-up",
                                "each referred patient lived {x} years on average within the follow-up",
                                "years"),
    "cost_per_infused": ("each infused patient cost {x} {m}",
                         "each infused patient cost {x}", "money"),
    "qalys_discounted_per_referred": ("each referred patient gained {x} {m} discounted QALYs",
                                      "each referred patient gained {x} discounted QALYs", "years"),
    "cost_discounted_per_referred": ("each referred patient cost {x} {m} (discounted)",
                                     "each referred patient cost {x} (discounted)", "money"),
}
_WORDS = {"per100": ("more", "fewer"), "rate": ("more", "fewer"), "count": ("more", "fewer"), "days": ("longer", "shorter"),
          "wait": ("more", "fewer"), "years": ("more", "fewer"), "money": ("more", "less")}


def _number(value: float, kind: str, currency: str) -> str:
    if kind == "per100":
        return f"{100 * value:.1f}"
    if kind in ("days", "wait"):
        return f"{value:.1f}"
    if kind == "years":
        return f"{value:.3f}"
    if kind == "count":
        return format_value(value, "count")
    if kind == "rate":
        return format_value(value, PER_100)
    return f"{currency} {value:,.0f}".strip()


def _signed(value: float, kind: str) -> str:
    """A signed bound of an interval, without the currency (the estimate names it)."""
    text = _number(abs(value), kind, "")
    return ("+" if value > 0 else (_MINUS if value < 0 else "±")) + text


def _rows(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    return table[table["metric"] == metric]


def _present(table: pd.DataFrame, metric: str) -> bool:
    means = _rows(table, metric)["mean"]
    return bool(len(means)) and any(_finite(v) and float(v) != 0 for v in means)


def _difference(metric: str, row: Mapping[str, Any], currency: str,
                aside: str = "") -> dict[str, Any] | None:
    diff, low, high = row.get("diff"), row.get("diff_ci_low"), row.get("diff_ci_high")
    if not _finite(diff):
        return None
    phrase, _, kind = _PHRASES[metric]
    more, less = _WORDS[kind]
    diff = float(diff)
    has_ci = _finite(low) and _finite(high)
    clear = has_ci and (float(low) > 0 or float(high) < 0)
    if diff == 0 and (not has_ci or float(low) == float(high) == 0):
        return {"metric": metric, "clear": False, "text": f"{str(row.get('label', metric))}: no "
                "difference (the same in every replication)."}
    text = phrase.format(x=_number(abs(diff), kind, currency), m=more if diff > 0 else less)
    if has_ci:
        text += f" ({aside}95% CI {_signed(float(low), kind)} to {_signed(float(high), kind)})"
    elif aside:
        text += f" ({aside.rstrip('; ')})"
    text += ("; the difference is statistically clear." if clear else
             "; no clear difference: the interval includes zero." if has_ci else
             "; no interval could be computed.")
    return {"metric": metric, "clear": clear, "text": text[0].upper() + text[1:]}


def _single(metric: str, row: Mapping[str, Any], currency: str, aside: str = "") -> str | None:
    if not _finite(row.get("mean")):
        return None
    _, phrase, kind = _PHRASES[metric]
    text = phrase.format(x=_number(float(row["mean"]), kind, currency))
    if _finite(row.get("ci_low")) and _finite(row.get("ci_high")):
        text += (f" ({aside}95% CI {_number(float(row['ci_low']), kind, '')} to "
                 f"{_number(float(row['ci_high']), kind, '')})")
    elif aside:
        text += f" ({aside.rstrip('; ')})"
    return text[0].upper() + text[1:] + "."


def _years(days: Any) -> str:
    if not _finite(days):
        return ""
    years = float(days) / 365.25
    return f" (about {years:.1f} years)" if years >= 1 else ""


def executive_summary(table: pd.DataFrame, names: Sequence[str], paired: bool, *,
                      replications: Sequence[str], seeds: Sequence[str], horizon_days: Any,
                      start_date: str, currency: str, referred: Mapping[str, Any],
                      economics: Mapping[str, Any] | None = None, pair_note: str = "") -> dict[str, Any]:
    """The summary's paragraphs: ``lead`` (what was compared or run), ``findings`` (one entry
    per scenario: its sentences), ``meaning`` (how to read them) and ``economics``."""
    reps = " or ".join(replications)
    horizon = (f"{float(horizon_days):,.0f} days of referrals{_years(horizon_days)}"
               if _finite(horizon_days) else "the scenario's horizon")
    # A rate per 100 referred, or its count in results written without rates.
    metrics = [m if _present(table, m) or not _present(table, count_of_rate(m) or m)
               else str(count_of_rate(m)) for m in SUMMARY_METRICS]
    metrics = [m for m in metrics if _present(table, m)]
    findings: list[dict[str, Any]] = []
    if len(names) > 1 and paired:
        baseline = names[0]
        lead = (f"This report compares {', '.join(names[1:])} with {baseline} (the baseline): "
                f"{reps} replications of each, every one simulating {horizon} from {start_date} "
                f"(seed {', '.join(seeds)}). The same simulated patients go through every pathway, "
                "so each difference below is paired by replication, with its 95% confidence interval.")
        for index, scenario in enumerate(names[1:], start=1):
            sentences = []
            for metric in metrics:
                row = _rows(table, metric)
                row = row[row["scenario"] == scenario]
                if len(row):
                    entry = _difference(metric, row.iloc[0].to_dict(), currency,
                                        _a_year(table, metric, scenario, horizon_days, "diff"))
                    if entry:
                        sentences.append(entry)
            findings.append({"scenario": scenario, "index": index, "sentences": sentences,
                             "heading": f"{scenario} compared with {baseline}:",
                             "n_clear": sum(s["clear"] for s in sentences)})
        n_clear = sum(f["n_clear"] for f in findings)
        n_all = sum(len(f["sentences"]) for f in findings)
        meaning = (f"{n_clear} of these {n_all} differences {'is' if n_clear == 1 else 'are'} "
                   "statistically clear: the 95% interval excludes zero, so the random variation "
                   f"between replications does not explain {'it' if n_clear == 1 else 'them'}. "
                   + (f"For the other {n_all - n_clear}, the interval includes zero: these "
                      "replications show no clear difference (a larger -n narrows the interval). "
                      if n_clear < n_all else "")
                   + "Every difference holds under the scenarios' inputs (section 4.3) and within "
                   "what the model represents (section 4.7).")
    else:
        if len(names) > 1:
            lead = (f"This report shows {len(names)} runs that are not paired ({pair_note.rstrip('.')}); "
                    f"each is {reps} replications of {horizon}.")
        else:
            lead = (f"This report shows {names[0]}: {reps} replications, each simulating {horizon} "
                    f"from {start_date} (seed {', '.join(seeds)}); numbers are means across "
                    "replications with 95% confidence intervals.")
        for index, scenario in enumerate(names):
            sentences = []
            ref = referred.get(scenario)
            if _finite(ref):
                sentences.append({"metric": "referred", "clear": False,
                                  "text": f"About {float(ref):,.0f} patients were referred over "
                                          f"{horizon}"
                                          + (f", {per_year(float(ref), float(horizon_days)):,.1f} a year."
                                             if _finite(horizon_days) else ".")})
            for metric in metrics:
                row = _rows(table, metric)
                row = row[row["scenario"] == scenario]
                text = (_single(metric, row.iloc[0].to_dict(), currency,
                                _a_year(table, metric, scenario, horizon_days, "mean"))
                        if len(row) else None)
                if text:
                    sentences.append({"metric": metric, "clear": False, "text": text})
            findings.append({"scenario": scenario if len(names) > 1 else "", "index": index,
                             "heading": f"{scenario}:" if len(names) > 1 else "",
                             "sentences": sentences, "n_clear": 0})
        meaning = ("The intervals are the Monte-Carlo uncertainty of the means over replications; "
                   "they hold under the scenario's inputs (section 4.3) and within what the model "
                   "represents (section 4.7), and do not include the uncertainty of the inputs "
                   "themselves.")
    statements = [s["text"] for s in (economics or {}).get("statements", []) if s.get("text")]
    if economics and statements:
        comparator = economics.get("comparator", "")
        statements = [f"Against {comparator}: {t}." for t in statements]
    return {"lead": lead, "findings": findings, "meaning": meaning, "economics": statements}


def _a_year(table: pd.DataFrame, metric: str, scenario: str, horizon_days: Any, column: str) -> str:
    """For a rate per 100 referred: its count a year over the referral window, as an aside
    before the interval ("about 2.28 a year; " or "about 0.35 more a year; "); empty for other
    metrics."""
    value = count_a_year(table, metric, scenario, column, horizon_days)
    if value is None or (column == "diff" and value == 0):
        return ""
    number = format_value(abs(value) if column == "diff" else value, "count")
    if column == "diff":
        return f"about {number} {'more' if value > 0 else 'fewer'} a year; "
    return f"about {number} a year; "


def referred_means(table: pd.DataFrame) -> dict[str, float]:
    """Mean referrals per replication of each scenario (``referred`` rows), where known."""
    rows = table[table["metric"] == "referred"]
    return {str(r["scenario"]): float(r["mean"]) for _, r in rows.iterrows()
            if _finite(r["mean"]) and not math.isnan(float(r["mean"]))}
