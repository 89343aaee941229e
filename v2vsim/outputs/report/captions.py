"""Captions of the figures the report embeds: what each figure shows and which statistic it
draws (a test checks them against the figure functions' own descriptions)."""

from __future__ import annotations

__all__ = ["COMPARISON_CAPTIONS", "FIGURE_CAPTIONS"]

#: Captions of the standard figures (``figures.run_figures``) and of comparison figures.
FIGURE_CAPTIONS: dict[str, tuple[str, str]] = {
    "vein_to_vein": (
        "Time to infusion",
        "Distribution of vein-to-vein time (start of the first apheresis to infusion) and of "
        "referral-to-infusion time among infused patients, pooled over all replications, in "
        "1-day bins as a share of infused patients. Solid line: median; dashed line: 90th "
        "percentile, each the mean across replications of every replication's own value (the "
        "numbers of the tables, with their 95% confidence intervals in the legend). The axis "
        "stops near the 97.5th percentile; the legend gives the share beyond it."),
    "attrition_funnel": (
        "Attrition from referral to infusion",
        "Mean number of patients in one replication's referral window reaching each stage "
        "(referred, apheresis done, manufacture started, product released, infused), with the "
        "share of referred patients, and the patients lost between stages coloured by cause."),
    "cumulative_incidence": (
        "Outcomes over time since referral",
        "Cumulative share of referred patients who have been infused, died, become ineligible "
        "or been lost otherwise, by days since referral. Lines: mean across replications of "
        "each replication's cumulative share; bands: the 95% t-interval of that mean (as in "
        "the comparison figure)."),
    "site_utilisation": (
        "Capacity-limited sites, month by month",
        "Each capacity-limited site by calendar month. Left: the share of slot time in use, "
        "mean across replications with its 95% confidence interval. Right: patients waiting "
        "for a slot, the median and the 90th percentile over the days of the month and all "
        "replications. Panel titles give the slots, the utilisation over the run and the mean "
        "number waiting."),
    "waitlist": (
        "Waitlist for site slots",
        "Drawn where a waitlist forms (a listed patient waited for a slot or never got one). "
        "Left: patients waiting for a slot at each capacity-limited site by calendar month, the "
        "mean across replications of each replication's mean over the month's days, with the "
        "95% t-interval of that mean as a band. Right: of the patients listed (their first "
        "request for a slot), the cumulative share who got a slot and who died while listed "
        "(before any slot), by months since listing: mean across replications with the 95% "
        "t-interval of that mean as a band, the shares at 3 and 6 months on the curves. "
        "Patients still waiting at the end of the run or who left the list otherwise are "
        "neither."),
    "journey": (
        "Patient journeys",
        "Step-by-step journeys of the traced patients of the first replication, in days since "
        "referral: hatched bars are waits for a slot or a start day, coloured bars the steps; "
        "the marker at the end is the patient's outcome."),
    "budget_impact": (
        "Budget impact by calendar year",
        "The payer's cost charged in each calendar year of the horizon (undiscounted), stacked "
        "by cost category: means across replications; above each bar the year's total with the "
        "95% t-interval of the total as an error bar."),
    "cost_breakdown": (
        "Cost per referred patient by category",
        "The payer's undiscounted cost per referred patient, by cost category (manufacture and "
        "release, logistics, hospital, follow-up, the sites' fixed costs): means across "
        "replications, with the 95% t-interval of the total."),
}

#: Captions of the figures of a comparison directory (``figures.comparison_figures``).
COMPARISON_CAPTIONS: dict[str, tuple[str, str]] = {
    "outcomes_per_100": (
        "Outcomes per 100 referred patients",
        "Out of 100 referred patients: how many are infused, die, become ineligible or are lost "
        "otherwise, per scenario. Means across replications with 95% t-interval error bars."),
    "vein_to_vein": (
        "Vein-to-vein time by scenario",
        "Vein-to-vein days of infused patients per scenario. Left: the share infused within x "
        "days, each replication's quantiles averaged over replications, so that the curve "
        "crosses 50% and 90% at the tables' median and 90th percentile (given with their 95% "
        "confidence intervals in the legend). Right: 1-day histogram, pooled over "
        "replications."),
    "cumulative_incidence": (
        "Infusion and death since referral",
        "Cumulative incidence of infusion and of death before infusion by days since referral, "
        "per scenario: mean across replications, with the 95% t-interval of that mean as a band."),
    "attrition_by_cause": (
        "Losses before infusion by cause",
        "Patients lost before infusion per 100 referred, by cause, side by side per scenario. "
        "Means across replications with 95% t-interval error bars."),
    "cost_per_patient": (
        "Cost per patient",
        "Cost per infused patient and per referred patient per scenario. Means across "
        "replications with 95% t-interval error bars."),
    "cost_breakdown": (
        "Cost per referred patient by category",
        "The payer's undiscounted cost per referred patient per scenario, stacked by cost "
        "category: means across replications, with the 95% t-interval of the total."),
    "budget_impact": (
        "Budget impact by calendar year",
        "The payer's cost charged in each calendar year of the horizon (undiscounted), stacked "
        "by cost category, one panel per scenario: means across replications; above each bar "
        "the year's total with the 95% t-interval of the total as an error bar."),
}
