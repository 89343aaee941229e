"""Out-of-specification products infused under an exception (``out_of_spec_infusion`` on a
release step), against hand-worked traces and closed forms.

A release failure (its failure draw below ``failure_probability``) is infused anyway when a
second draw, from its own stream ``step:NAME:ATTEMPT:exception``, is below ``probability``:
the patient goes on as if released (status ``exception`` in the trace), is infused, and is
counted in ``infused_out_of_specification``; its chance of a response is the exception's
``response_probability``. With failure probability f and exception probability e, no retries,
a share f·e of the referred patients is infused out of specification and 1 - f + f·e in all.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

import v2vsim
from v2vsim.engine.engines import EngineError, engine_for
from v2vsim.engine.replication import run_replication
from v2vsim.scenario import Scenario, ScenarioError, scenario_from_dict

Z = 4.0


def make(exception: dict[str, Any] | None, *, failure: float = 1.0, n: int = 400,
         on_failure: dict[str, Any] | None = None, infusion: dict[str, Any] | None = None,
         **cohort: Any) -> Scenario:
    release: dict[str, Any] = {"name": "qc", "kind": "release", "duration": 2, "failure_probability": failure}
    if exception is not None:
        release["out_of_spec_infusion"] = exception
    if on_failure is not None:
        release["on_failure"] = on_failure
    return scenario_from_dict({
        "name": "exception",
        "horizon_days": 365,
        "arrivals": {"rate_per_year": n},
        "cohorts": [{"name": "all", "pathway": "p", "after_infusion": {"response_probability": 0.7},
                     **cohort}],
        "pathways": {"p": {"steps": [
            {"name": "make", "kind": "manufacture", "duration": 10},
            release,
            {"name": "infusion", "kind": "infusion", "duration": 1, **(infusion or {})},
        ]}},
    })


def run(sc: Scenario, seed: int = 5, **kw: Any) -> Any:
    return v2vsim.simulate(sc, replications=1, seed=seed, engine="simpy", **kw)


def binomial_check(hits: int, n: int, p: float) -> None:
    se = math.sqrt(p * (1 - p) / n)
    assert abs(hits / n - p) <= Z * se, f"{hits}/{n} = {hits / n:.5f} vs {p:.5f} (se {se:.5f})"


def test_every_failure_infused_under_an_exception_is_flagged_and_traced() -> None:
    # Failure 1, exception 1: every patient is made (days 0-10), fails release (10-12) and is
    # infused anyway (12-13), as if released: release_day = referral + 12.
    res = run(make({"probability": 1.0, "response_probability": 0.25}))  # the first 40 traced
    p = res.patients
    assert (p["outcome"] == "infused").all()
    assert (p["infused_out_of_specification"] == 1.0).all()
    np.testing.assert_allclose(p["release_day"] - p["referral_day"], 12.0)
    np.testing.assert_allclose(p["infusion_day"] - p["referral_day"], 13.0)
    assert res.replications.loc[0, "infused_out_of_specification"] == len(p)
    assert res.replications.loc[0, "out_of_specification"] == 0
    ev = res.events[res.events["patient"] == 0]
    assert ev[["step", "attempt", "start_day", "end_day", "status"]].values.tolist() == [
        ["make", 1, p.loc[0, "referral_day"], p.loc[0, "referral_day"] + 10, "done"],
        ["qc", 1, p.loc[0, "referral_day"] + 10, p.loc[0, "referral_day"] + 12, "exception"],
        ["infusion", 1, p.loc[0, "referral_day"] + 12, p.loc[0, "referral_day"] + 13, "done"],
    ]
    # Their response probability is the exception's, 0.25, not the cohort's 0.7.
    binomial_check(int(p["responded"].sum()), len(p), 0.25)


def test_an_exception_probability_of_zero_is_the_same_as_no_key() -> None:
    plain = run(make(None, failure=0.3)).patients
    zero = run(make({"probability": 0.0, "response_probability": 0.1}, failure=0.3)).patients
    pd.testing.assert_frame_equal(plain, zero)
    assert plain["infused_out_of_specification"].isna().all()
    assert "infused_out_of_specification" not in run(make(None, failure=0.3)).replications


def test_a_failure_not_excepted_stands() -> None:
    # Exception 0.5: the others end out_of_specification as before; flagged 0/1 only if infused.
    p = run(make({"probability": 0.5, "response_probability": 0.5}, n=2000)).patients
    infused = p["outcome"] == "infused"
    assert set(p.loc[infused, "infused_out_of_specification"]) == {1.0}
    assert p.loc[~infused, "infused_out_of_specification"].isna().all()
    assert set(p.loc[~infused, "outcome"]) == {"out_of_specification"}
    binomial_check(int(infused.sum()), len(p), 0.5)


def test_share_infused_out_of_specification_and_their_response_rate_closed_form() -> None:
    f, e, r = 0.3, 0.6, 0.4
    res = run(make({"probability": e, "response_probability": r}, failure=f, n=20_000), seed=11)
    p = res.patients
    n = len(p)
    oos = p["infused_out_of_specification"] == 1.0
    binomial_check(int(oos.sum()), n, f * e)                             # 0.18 of the referred
    binomial_check(int((p["outcome"] == "infused").sum()), n, 1 - f + f * e)
    binomial_check(int((p["outcome"] == "out_of_specification").sum()), n, f * (1 - e))
    binomial_check(int(p.loc[oos, "responded"].sum()), int(oos.sum()), r)     # R among them
    conforming = p["infused_out_of_specification"] == 0.0
    binomial_check(int(p.loc[conforming, "responded"].sum()), int(conforming.sum()), 0.7)
    assert res.replications.loc[0, "infused_out_of_specification"] == int(oos.sum())
    assert res.replications.loc[0, "infused_out_of_specification_per_100_referred"] == pytest.approx(
        100 * oos.sum() / n)


def test_the_same_patients_are_infused_under_an_exception_across_scenarios() -> None:
    # Common random numbers: the failure draws are the same with and without the exception, so
    # exactly the patients who failed release are the candidates for it.
    plain = run(make(None, failure=0.3, n=2000)).patients
    exc = run(make({"probability": 0.6, "response_probability": 0.5}, failure=0.3, n=2000)).patients
    failed = plain["outcome"] == "out_of_specification"
    assert (exc.loc[~failed, "infused_out_of_specification"] == 0.0).all()
    assert (exc.loc[~failed, "infusion_day"] == plain.loc[~failed, "infusion_day"]).all()
    assert set(exc.loc[failed, "outcome"]) <= {"infused", "out_of_specification"}


def test_a_retry_that_remakes_the_product_clears_the_mark() -> None:
    # Release fails half the time, always excepted; the infusion fails half the time and is
    # retried from manufacture (a new product, released again). An infused patient is flagged
    # exactly when the last release of its product was passed under the exception.
    sc = make({"probability": 1.0, "response_probability": 0.5}, failure=0.5, n=3000, infusion={
        "failure_probability": 0.5, "on_failure": {"retry_from": "make", "max_attempts": 3}})
    out = run_replication(sc, 3, 0, trace_patients=10**6)
    last: dict[int, str] = {}
    for patient, step, _, _, _, _, _, status in out.events:
        if step == "qc":
            last[patient] = status
    flag = out.columns["infused_out_of_specification"]
    infused = np.flatnonzero(out.columns["outcome"] == "infused")
    assert infused.size > 1000
    assert [flag[i] for i in infused] == [1.0 if last[i] == "exception" else 0.0 for i in infused]
    retried = [i for i in infused if sum(1 for e in out.events if e[0] == i and e[1] == "qc") > 1]
    assert {flag[i] for i in retried} == {0.0, 1.0}  # cleared by a remade product, or set again


def test_the_fast_engines_refuse_it_and_auto_takes_simpy() -> None:
    sc = make({"probability": 0.5, "response_probability": 0.5})
    assert engine_for(sc, "auto") == "simpy"
    for name in ("vectorised", "compiled"):
        with pytest.raises(EngineError, match="out_of_spec_infusion"):
            engine_for(sc, name)
    # Probability 0 is no exception: the fast engines run it.
    assert engine_for(make({"probability": 0.0, "response_probability": 0.5}), "auto") == "vectorised"


def test_only_on_a_release_step(tmp_path: Any) -> None:
    text = """name: bad
horizon_days: 30
arrivals: {schedule: [0]}
cohorts: [{name: all, pathway: p}]
pathways:
  p:
    steps:
      - name: make
        kind: manufacture
        out_of_spec_infusion: {probability: 0.5, response_probability: 0.5}
      - {name: infusion, kind: infusion}
"""
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as err:
        v2vsim.load_scenario(path)
    message = str(err.value)
    assert f"{path}:10: pathways.p.steps[0].out_of_spec_infusion: " in message
    assert "only allowed on a release step, not on a manufacture step" in message
