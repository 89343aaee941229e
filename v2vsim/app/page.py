"""The web app's page (a Streamlit script, started by ``v2vsim app``).

A thin layer: scenarios are read and checked by :mod:`v2vsim.scenario`, what the user changes
becomes ``--set`` texts (:mod:`.controls`), runs are the ``v2vsim`` command line in a process of
its own (:mod:`.jobs`), and what is shown is read from the results directory it wrote
(:mod:`.results`). Every control shows its ``--set`` path, and the page shows the command that
gives the same results in a terminal.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st

from .._version import __version__
from ..scenario import ScenarioError, load_scenario
from ..scenario.bundled import bundled_scenarios, scenario_path
from ..scenario.overrides import ScenarioSource, parse_sets
from .controls import Control, assignments, controls_for
from .jobs import Job, Request, ScenarioInput, cache_root
from .results import (capacity_answer, comparison_table, figures, key_cards, read_comparison,
                      screen_copy, warnings_of)
from .template import FormValues, form_yaml

#: Most referrals one run of the app simulates (all scenarios and replications); larger runs
#: are for the command line, which asks for --allow-large above 20 million.
MAX_REFERRALS = 5_000_000
MAX_REPLICATIONS = 100_000
#: Metrics a capacity question can ask about, with their units.
CAPACITY_METRICS = {
    "queue_wait_mean": ("mean wait for a slot", "days"),
    "referral_to_infusion_median": ("median time from referral to infusion", "days"),
    "vein_to_vein_median": ("median vein-to-vein time", "days"),
    "infused_fraction": ("share of referred patients infused", "fraction 0-1"),
    "died": ("deaths before infusion per replication", "patients"),
}


# --------------------------------------------------------------------------- scenario inputs


@functools.lru_cache(maxsize=1)
def _bundled() -> dict[str, ScenarioInput]:
    out = {}
    for item in bundled_scenarios():
        path = scenario_path(item.name)
        out[item.name] = ScenarioInput(str(path), item.name, path.read_text(encoding="utf-8"))
    return out


def _save_upload(name: str, text: str) -> ScenarioInput:
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", Path(name).name)[:80] or "scenario.yaml"
    if not safe.endswith((".yaml", ".yml")):
        safe += ".yaml"
    folder = cache_root() / "uploads" / digest
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / safe
    if not path.is_file():
        path.write_text(text, encoding="utf-8")
    return ScenarioInput(str(path), safe, text)


def _problems(exc: ScenarioError, limit: int = 20) -> str:
    lines = [str(p) for p in exc.problems]
    more = f"\n... and {len(lines) - limit} more" if len(lines) > limit else ""
    return "\n".join(lines[:limit]) + more


def _check_upload(name: str, data: bytes) -> tuple[ScenarioInput | None, str | None]:
    """The uploaded file as an input, or the problems that keep it out (with line numbers)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"{name}: not UTF-8 text (byte {exc.start}); save the file as UTF-8"
    try:
        load_scenario(Path(name), text)
    except ScenarioError as exc:
        return None, _problems(exc)
    return _save_upload(name, text), None


def _inputs() -> dict[str, ScenarioInput]:
    """Every scenario the user can pick: the bundled ones, uploads and form scenarios."""
    inputs = dict(_bundled())
    inputs.update(st.session_state.setdefault("added", {}))
    return inputs


# --------------------------------------------------------------------------- controls


def _number(control: Control, key: str, value: float, label: str) -> Any:
    common: dict[str, Any] = {"key": key, "help": f"--set {control.path}" + (f"\n\n{control.help}" if control.help else "")}
    if control.kind == "int":
        return st.number_input(label, min_value=int(control.minimum),
                               max_value=int(control.maximum) if control.maximum else None,
                               value=int(value), step=1, **common)
    if control.kind == "probability":
        return st.number_input(label, min_value=0.0, max_value=1.0, value=float(value), step=0.01,
                               format="%.3f", **common)
    big = abs(float(value)) >= 1000
    return st.number_input(label, min_value=float(control.minimum),
                           max_value=float(control.maximum) if control.maximum else None,
                           value=float(value), step=1000.0 if big else 0.1,
                           format="%.0f" if big else "%.3g" if control.unit == "days" else "%.2f",
                           **common)


def _controls(slot: str, chosen: ScenarioInput) -> tuple[list[str], str | None]:
    """The controls of one scenario (in an expander per group): its ``--set`` texts, or the
    problems of the changed scenario."""
    try:
        scenario = load_scenario(Path(chosen.path), chosen.text)
    except ScenarioError as exc:
        return [], _problems(exc)
    controls = controls_for(scenario)
    values: dict[str, Any] = {}
    prefix = f"{slot}|{hashlib.sha256(chosen.text.encode()).hexdigest()[:10]}|"
    groups = list(dict.fromkeys(c.group for c in controls))
    main = [g for g in groups if not g.startswith("Step:")]
    steps = [g for g in groups if g.startswith("Step:")]
    for group in main + steps:
        with st.expander(group, expanded=group == "Capacity"):
            for control in (c for c in controls if c.group == group):
                key = prefix + control.path
                unit = f" ({control.unit})" if control.unit not in ("probability", "weight") else ""
                if control.kind == "duration":
                    left, right = st.columns(2)
                    with left:
                        median = st.number_input("Median (days)", min_value=0.0, value=float(control.value[0]),
                                                 step=0.5, format="%.3g", key=key + "|median",
                                                 help=f"--set {control.path}\n\n{control.help}")
                    with right:
                        p90 = st.number_input("90th percentile (days)", min_value=0.0,
                                              value=float(control.value[1]), step=0.5, format="%.3g",
                                              key=key + "|p90", help=f"--set {control.path}\n\n{control.help}")
                    values[control.path] = (median, p90)
                else:
                    values[control.path] = _number(control, key, control.value, control.label + unit)
                st.caption(f"`--set {control.path}`")
    sets = assignments(controls, values)
    if sets:
        try:
            ScenarioSource(chosen.path).variant(parse_sets(sets))
        except ScenarioError as exc:
            return sets, _problems(exc)
    return sets, None


# --------------------------------------------------------------------------- runs


def _request_size(request: Request) -> float:
    total = 0.0
    for item, own in zip(request.scenarios, request.own):
        scenario = ScenarioSource(item.path).variant(parse_sets(list(own)))
        total += scenario.expected_referrals()
    return total * request.replications


def _start(request: Request, slot: str) -> None:
    Job(request).start()
    st.session_state[f"job:{slot}"] = request


@st.fragment(run_every=1.0)
def _progress(slot: str) -> None:
    """The state of the session's run of kind ``slot``: a bar while it runs (with Cancel), and
    a full rerun of the page when it ends, to show the results."""
    request: Request | None = st.session_state.get(f"job:{slot}")
    if request is None:
        return
    job = Job(request)
    progress = job.progress()
    seen_key = f"{slot}|seen"
    if progress.state == "running":
        st.progress(progress.fraction, text=f"Running: {progress.text}")
        if st.button("Cancel", key=f"{slot}|cancel", help="Stop the run and its worker processes"):
            job.cancel()
            st.rerun(scope="app")
        st.session_state[seen_key] = "running"
        return
    if st.session_state.get(seen_key) == "running":  # it ended since the last look
        st.session_state[seen_key] = progress.state
        st.rerun(scope="app")


def _job_section(slot: str, noun: str, show: Callable[[Job], None]) -> None:
    """The session's run of kind ``slot``: its progress while it runs, then its results
    (``show``), why it failed, or that it was cancelled."""
    _progress(slot)
    current: Request | None = st.session_state.get(f"job:{slot}")
    if current is None:
        return
    job = Job(current)
    progress = job.progress()
    if progress.state == "done":
        show(job)
    elif progress.state == "failed":
        st.error(f"The {noun} failed:\n\n```\n{progress.message}\n```")
    elif progress.state == "cancelled":
        st.info(f"The {noun} was cancelled; nothing was kept.")


def _downloads(job: Job, inputs: list[tuple[ScenarioInput, list[str]]]) -> None:
    st.subheader("Download")
    cols = st.columns(3)
    with cols[0]:
        st.download_button("Results directory (.zip)", lambda: job.zip().read_bytes(),  # built when asked
                           file_name=f"v2vsim-{job.request.command}-{job.request.key[:8]}.zip",
                           mime="application/zip", key=f"zip|{job.request.key}", on_click="ignore",
                           help="Every file the command wrote, with its manifest (sha256 of each file)")
    with cols[1]:
        if job.request.command == "compare":
            if st.button("Make the report (HTML and PDF)", key=f"report|{job.request.key}",
                         help="v2vsim report RESULTS -o report.html, and -o report.pdf (printed by "
                              "headless Chromium)"):
                with st.spinner("Writing the report"):
                    for suffix in (".html", ".pdf"):
                        try:
                            job.report(suffix)
                        except RuntimeError as exc:
                            st.error(f"The {suffix[1:].upper()} report could not be written: {exc}")
                            break
            for suffix, mime in ((".html", "text/html"), (".pdf", "application/pdf")):
                path = job.dir / f"report{suffix}"
                if path.is_file():
                    st.download_button(f"Report ({suffix})", path.read_bytes(),
                                       file_name=f"v2vsim-report{suffix}", mime=mime,
                                       key=f"{suffix}|{job.request.key}", on_click="ignore")
    with cols[2]:
        for i, (item, sets) in enumerate(inputs):
            text = ScenarioSource(item.path).variant_text(parse_sets(sets)) if sets else item.text
            stem = Path(item.shown).stem if item.shown.endswith((".yaml", ".yml")) else item.shown
            name = f"{stem}{'-changed' if sets else ''}.yaml"
            st.download_button(f"Scenario {chr(ord('A') + i)} as run ({name})", text.encode("utf-8"),
                               file_name=name, mime="application/x-yaml",
                               key=f"yaml|{job.request.key}|{i}", on_click="ignore")


def _comparison_results(job: Job, inputs: list[tuple[ScenarioInput, list[str]]]) -> None:
    frame = read_comparison(job.results)
    names = list(dict.fromkeys(frame["scenario"]))
    progress = job.progress()
    st.header("Results")
    st.write(f"{job.request.replications} replications per scenario, seed {job.request.seed}: the "
             "same virtual patients in every scenario, so differences are paired by replication. "
             + (f"Computed in {progress.seconds:.1f} s." if progress.seconds else "From the cache."))
    st.markdown("\n".join(f"- **{chr(ord('A') + i)}** = {name}" + (" (baseline)" if i == 0 else "")
                          for i, name in enumerate(names)))
    for warning in warnings_of(job.log()):
        st.warning(warning)
    for card in key_cards(frame):
        cols = st.columns(len(names))
        for i, col in enumerate(cols):
            with col:
                st.metric(f"{card.label}{card.unit} — {chr(ord('A') + i)}", card.values[i].split(" (")[0],
                          delta=None if card.differences[i] is None else f"{card.differences[i]} vs A",
                          delta_color="off",
                          help=f"mean (95% CI): {card.values[i]}")
    st.subheader("Every metric: mean (95% CI) and paired difference from A")
    st.dataframe(comparison_table(frame), hide_index=True, width="stretch")
    st.subheader("Figures")
    for path, caption in figures(job.results):
        st.image(str(screen_copy(path, job.dir / "screen")), caption=caption, width="stretch")
    _downloads(job, inputs)


def _capacity_results(job: Job) -> None:
    answer = capacity_answer(job.results)
    st.subheader("Answer")
    if answer.answer is None:
        st.warning(f"No count up to {answer.max_slots} slots at {answer.site} meets "
                   f"{' and '.join(answer.targets)} with 95% confidence.")
    else:
        st.success(f"{answer.answer} slot{'s' if answer.answer != 1 else ''} at {answer.site} "
                   f"meet{'s' if answer.answer == 1 else ''} {' and '.join(answer.targets)} with 95% "
                   "confidence (the bound of the 95% CI is within the target).")
    st.dataframe(answer.table, hide_index=True, width="stretch")
    if answer.figure is not None:
        st.image(str(screen_copy(answer.figure, job.dir / "screen")), width="stretch")
    st.download_button("Capacity results (.zip)", lambda: job.zip().read_bytes(),
                       file_name=f"v2vsim-capacity-{job.request.key[:8]}.zip", mime="application/zip",
                       key=f"capzip|{job.request.key}", on_click="ignore")


# --------------------------------------------------------------------------- the page


def _sidebar() -> None:
    with st.sidebar:
        st.header("Your own scenarios")
        uploads = st.file_uploader("Upload scenario YAML files", type=["yaml", "yml"],
                                   accept_multiple_files=True,
                                   help="Checked like `v2vsim validate`: problems are shown with "
                                        "their line numbers.")
        added = st.session_state.setdefault("added", {})
        for upload in uploads or []:
            item, problem = _check_upload(upload.name, upload.getvalue())
            if problem:
                st.error(f"{upload.name} was not added:\n\n```\n{problem}\n```")
            elif item is not None:
                added[item.shown] = item
        with st.expander("New scenario from a form"):
            with st.form("new scenario"):
                defaults = FormValues()
                values = FormValues(
                    name=st.text_input("Name", defaults.name),
                    currency=st.text_input("Currency", defaults.currency),
                    referrals_per_year=st.number_input("Referrals per year", 0.1, 10_000.0, defaults.referrals_per_year),
                    median_survival_days=st.number_input("Median survival without CAR-T (days)", 1.0, 36_500.0,
                                                         defaults.median_survival_days),
                    devices=int(st.number_input("Manufacturing devices (slots)", 1, 200, defaults.devices)),
                    shipping_days=st.number_input("Shipping each way (days)", 0.0, 60.0, defaults.shipping_days),
                    manufacture_median_days=st.number_input("Manufacture: median (days)", 0.1, 365.0,
                                                            defaults.manufacture_median_days),
                    manufacture_p90_days=st.number_input("Manufacture: 90th percentile (days)", 0.1, 365.0,
                                                         defaults.manufacture_p90_days),
                    manufacture_failure_probability=st.number_input(
                        "Manufacture: failure probability", 0.0, 1.0, defaults.manufacture_failure_probability),
                    release_days=st.number_input("Release testing (days)", 0.0, 60.0, defaults.release_days),
                    cost_per_patient=st.number_input("Cost per patient", 0.0, 1e9, defaults.cost_per_patient, step=1000.0),
                    horizon_years=st.number_input("Years of referrals", 0.1, 50.0, defaults.horizon_years),
                )
                if st.form_submit_button("Add this scenario"):
                    text = form_yaml(values)
                    stem = re.sub(r"[^A-Za-z0-9]+", "_", values.name).strip("_").lower() or "form"
                    item, problem = _check_upload(f"{stem}.yaml", text.encode("utf-8"))
                    if problem:
                        st.error(f"The form's scenario is not valid:\n\n```\n{problem}\n```")
                    elif item is not None:
                        added[item.shown] = item
                        st.success(f"Added {item.shown}: pick it as A or B.")
        st.caption(f"v2vsim {__version__} · results are cached in {cache_root()}")


def main() -> None:
    st.set_page_config(page_title="v2vsim — CAR-T vein-to-vein", layout="wide")
    st.title("v2vsim: vein-to-vein logistics of CAR-T therapy")
    st.write("Compare pathways on the same virtual patients: how long they wait, how many are "
             "lost on the way and why, what each infused patient costs. Pick two scenarios, "
             "change what you want to ask about, and run.")
    _sidebar()
    inputs = _inputs()
    names = list(inputs)
    st.header("1 · Scenarios")
    cols = st.columns(2)
    chosen: list[tuple[ScenarioInput, list[str]]] = []
    problems: list[str] = []
    for i, (col, slot, default) in enumerate(zip(cols, ("A", "B"), ("local", "overseas"))):
        with col:
            index = names.index(default) if default in names else min(i, len(names) - 1)
            label = "A: the baseline" if slot == "A" else "B: compared with A"
            pick = st.selectbox(label, names, index=index, key=f"pick{slot}")
            item = inputs[pick]
            st.caption(f"Changes to {slot} ({pick}); each control's `--set` path is under it.")
            sets, problem = _controls(slot, item)
            chosen.append((item, sets))
            if problem:
                problems.append(f"{slot} ({pick}):\n{problem}")
    base = load_scenario(Path(chosen[0][0].path), chosen[0][0].text) if not problems else None
    st.header("2 · Run")
    left, right = st.columns(2)
    with left:
        replications = st.number_input("Replications per scenario", 1, MAX_REPLICATIONS,
                                       int(base.replications) if base else 200, step=50,
                                       help="Each replication is a run of the whole horizon; more give narrower "
                                            f"intervals (`-n`, at most {MAX_REPLICATIONS:,} here).")
    with right:
        seed = st.number_input("Seed", 0, 2**53 - 1, min(int(base.seed), 2**53 - 1) if base else 1,
                               help="The same seed gives the same results (`--seed`; the command "
                                    "line takes seeds up to 2^63 - 1, the browser up to 2^53 - 1).")
    if chosen[0][0] == chosen[1][0] and chosen[0][1] == chosen[1][1]:
        problems.append("A and B are the same scenario with the same values: change B, or pick "
                        "another scenario.")
    for problem in problems:
        st.error(f"```\n{problem}\n```")
    request = Request("compare", tuple(item for item, _ in chosen), tuple(tuple(s) for _, s in chosen),
                      int(replications), int(seed))
    st.write("The same on the command line:")
    st.code(request.shown(), language="bash")
    size = 0.0 if problems else _request_size(request)
    if size > MAX_REFERRALS:
        st.error(f"This run would simulate about {size:,.0f} referrals, more than the app runs at a "
                 f"time ({MAX_REFERRALS:,}): use fewer replications, or the command line above "
                 "(with --allow-large beyond 20 million).")
    job = Job(request)
    cached = job.done
    clicked = st.button("Show the results" if cached else "Run", type="primary",
                        disabled=bool(problems) or size > MAX_REFERRALS, key="run")
    if clicked:
        _start(request, "compare")
    _job_section("compare", "run", lambda job: _comparison_results(
        job, [(item, list(own)) for item, own in zip(job.request.scenarios, job.request.own)]))
    _capacity_section(chosen, problems, int(replications), int(seed))


def _capacity_section(chosen: list[tuple[ScenarioInput, list[str]]], problems: list[str],
                      replications: int, seed: int) -> None:
    st.header("3 · How many devices?")
    item, sets = chosen[0]
    if problems:
        st.info("Fix the problems above first.")
        return
    scenario = ScenarioSource(item.path).variant(parse_sets(sets))
    sites = [key for key, site in scenario.sites.items() if isinstance(site.slots, int)]
    if not sites:
        st.info(f"Scenario A ({item.shown}) has no site with a fixed number of slots to search.")
        return
    st.write(f"The smallest number of slots at a site of scenario A ({item.shown}, with its changes) "
             "that meets a target with 95% confidence (`v2vsim capacity`).")
    cols = st.columns([2, 3, 1, 2])
    with cols[0]:
        site = st.selectbox("Site", sites, key="capsite")
    with cols[1]:
        metric = st.selectbox("Target", list(CAPACITY_METRICS), key="capmetric",
                              format_func=lambda m: f"{CAPACITY_METRICS[m][0]} ({CAPACITY_METRICS[m][1]})")
    with cols[2]:
        op = st.selectbox("Comparison", ["<=", ">="], key="capop",
                          index=1 if metric == "infused_fraction" else 0)
    with cols[3]:
        value = st.number_input("Value", 0.0, 1e6, 0.8 if metric == "infused_fraction" else 7.0,
                                key=f"capvalue|{metric}")
    target = f"{metric}{op}{value:g}"
    request = Request("capacity", (item,), (tuple(sets),), replications, seed, site=site, target=target)
    st.code(request.shown(), language="bash")
    if st.button("Find the number of slots", key="find_slots"):
        _start(request, "capacity")
    _job_section("capacity", "search", _capacity_results)
