"""A scenario written from the web app's form: one cohort, one manufacturing site, the steps of
a vein-to-vein pathway (collection, shipping, manufacture, release, shipping back, conditioning,
infusion). Step names are those of the bundled scenarios, so a form scenario compared with one
of them gives the same patient the same draws for the steps they share (common random numbers).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .controls import duration_value, format_number

__all__ = ["FormValues", "form_yaml"]


@dataclass(frozen=True)
class FormValues:
    """The form's fields, with the units in their names."""

    name: str = "My centre"
    currency: str = "USD"
    referrals_per_year: float = 20.0
    median_survival_days: float = 190.0
    devices: int = 1
    shipping_days: float = 1.0
    manufacture_median_days: float = 12.0
    manufacture_p90_days: float = 14.0
    manufacture_failure_probability: float = 0.05
    release_days: float = 1.0
    cost_per_patient: float = 300_000.0
    horizon_years: float = 5.0


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def form_yaml(values: FormValues) -> str:
    """The scenario file of the form's values (validated by the caller like any file)."""
    currency = re.sub(r"[^A-Za-z0-9_]", "", values.currency) or "USD"
    shipping = format_number(values.shipping_days)
    manufacture = duration_value(values.manufacture_median_days, values.manufacture_p90_days)
    manufacture_cost = format_number(round(values.cost_per_patient * 0.7, 2))
    hospital_cost = format_number(round(values.cost_per_patient * 0.3, 2))
    return f"""\
# Written by the v2vsim web app's form. Every value is the form's; the pathway's shape
# (weekday starts, one re-collection after a failed batch, a 0.5-day wait to infuse) is the
# form's default. Change any value here or with --set PATH=VALUE.
name: {_quoted(values.name)}
horizon_days: {format_number(round(values.horizon_years * 365, 3))}
replications: 200
seed: 20250415
currency: {currency}

arrivals:
  rate_per_year: {format_number(values.referrals_per_year)}

cohorts:
  - name: patients
    share: 1
    pathway: main
    # Survival without CAR-T from referral: Weibull with shape 0.95 (as for r/r LBCL, SCHOLAR-1)
    # through the form's median.
    time_to_death: {{dist: weibull, shape: 0.95, median: {format_number(values.median_survival_days)}}}
    time_to_ineligible: {{dist: exponential, mean: 365}}   # ~8% a month become ineligible (assumption)

sites:
  manufacturing:
    slots: {int(values.devices)}
    starts_on: [mon, tue, wed, thu, fri]

pathways:
  main:
    steps:
      - name: apheresis
        kind: apheresis
        starts_on: [mon, tue, wed, thu, fri]
        duration: 0.2
      - name: shipping_out
        kind: transport
        duration: {shipping}
      - name: manufacture
        kind: manufacture
        site: manufacturing
        reserve_from: apheresis
        duration: {manufacture}
        failure_probability: {format_number(values.manufacture_failure_probability)}
        on_failure: {{retry_from: apheresis, max_attempts: 2}}
        cost: {manufacture_cost}
      - name: qc_release
        kind: release
        duration: {format_number(values.release_days)}
      - name: shipping_back
        kind: transport
        duration: {shipping}
      - name: conditioning
        kind: conditioning
        duration: 0
      - name: infusion
        kind: infusion
        duration: {{dist: exponential, mean: 0.5}}
        cost: {hospital_cost}
"""
