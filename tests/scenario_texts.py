"""Scenario texts that several test files run (imported by name: pytest puts tests/ on the path)."""

#: A small scenario: one cohort, one two-slot site, a three-step pathway (5 replications).
SMALL = """\
name: small test
horizon_days: 200
replications: 5
seed: 11
currency: HKD
arrivals: {rate_per_year: 40}
cohorts:
  - {name: a, share: 1, pathway: p, time_to_death: {dist: exponential, mean: 300}}
sites:
  dev: {slots: 2, cost_per_use: 100}
pathways:
  p:
    steps:
      - {name: apheresis, kind: apheresis, duration: 1, cost: 10}
      - {name: make, kind: manufacture, site: dev, reserve_from: apheresis, duration: {dist: uniform, low: 9, high: 12}}
      - {name: infusion, kind: infusion, duration: 1}
"""

#: A sweep's base scenario slow enough per point (about 0.2-0.5 s) that a signal arrives
#: mid-sweep (12 replications, one one-slot plant).
RESUMABLE = """\
name: resumable
horizon_days: 1500
replications: 12
seed: 5
arrivals: {rate_per_year: 60}
cohorts:
  - {name: adult, pathway: p, time_to_death: {dist: exponential, mean: 300}}
sites:
  plant: {slots: 1}
pathways:
  p:
    steps:
      - {name: apheresis, kind: apheresis, duration: 1}
      - {name: manufacture, kind: manufacture, site: plant, reserve_from: apheresis,
         duration: {dist: uniform, low: 2, high: 9}}
      - {name: infusion, kind: infusion, duration: 1}
"""
