"""Nothing saved for ``--resume`` is trusted: real ``v2vsim sweep`` (and ``psa``,
``sensitivity``) processes are killed with SIGKILL mid-run (with their workers), their
``DIR.partial`` is damaged (19 kinds of damage to a saved point, an unknown file, a write cut
short, the points directory replaced by a file), and ``--resume`` must discard exactly the
damaged points (one line each, saying which and why), compute only those again, and end with
data files byte-identical to an uninterrupted run; a store of another scenario, design or seed,
or with an unreadable state file, is refused with exit 2 and left untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from scenario_texts import RESUMABLE as SCENARIO

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


SWEEP = ["--set", "sites.plant.slots=1,2,3,4", "--set", "arrivals.rate_per_year=50,60,70", "-n", "20"]
N_POINTS = 12
#: The files of a sweep meant to be reproducible (the manifest holds times and the command).
SWEEP_FILES = ("sweep.csv", "sweep.parquet", "replications.parquet", "points.csv", "scenario.yaml", "sweep.json")
DISCARD = re.compile(r"resume: saved point (\d+) discarded \((.*)\); it will be computed again")
CLI = [sys.executable, "-c", "from v2vsim.cli import main; main()"]
ENV = {**os.environ, "COLUMNS": "200"}


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, env=ENV, timeout=120)


def killed_mid_run(args: list[str], cwd: Path, points_dir: Path, at_least: int) -> list[int]:
    """Start the command in its own process group, SIGKILL the group once ``at_least``
    points are saved; the indices of the points saved (both files present)."""
    proc = subprocess.Popen([*CLI, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while not (points_dir.is_dir() and len(list(points_dir.glob("*.json"))) >= at_least):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, f"{at_least} points not saved within 90 s"
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    return sorted(int(p.stem) for p in points_dir.glob("*.json") if p.with_suffix(".parquet").is_file())


def digests(directory: Path, names: tuple[str, ...]) -> dict[str, str]:
    return {n: hashlib.sha256((directory / n).read_bytes()).hexdigest() for n in names}


def tree(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- damage, one kind each


def data(d: Path, i: int) -> Path:
    return d / f"{i:06d}.parquet"


def side(d: Path, i: int) -> Path:
    return d / f"{i:06d}.json"


def reseal(path: Path, change: Callable[[dict], None]) -> None:
    """Edit a sidecar and give it a matching checksum (as a consistent but wrong sidecar)."""
    record = json.loads(path.read_text(encoding="utf-8"))
    record.pop("check")
    change(record)
    record["check"] = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()
    path.write_text(json.dumps(record, sort_keys=True), encoding="utf-8")


def truncate(d: Path, i: int, _other: int) -> str:
    raw = data(d, i).read_bytes()
    data(d, i).write_bytes(raw[: len(raw) // 2])
    return "does not match its checksum"


def empty_data(d: Path, i: int, _other: int) -> str:
    data(d, i).write_bytes(b"")
    return "parquet is empty"


def random_bytes(d: Path, i: int, _other: int) -> str:
    data(d, i).write_bytes(os.urandom(data(d, i).stat().st_size))
    return "does not match its checksum"


def flipped_byte(d: Path, i: int, _other: int) -> str:
    raw = bytearray(data(d, i).read_bytes())
    raw[len(raw) // 2] ^= 0x01
    data(d, i).write_bytes(bytes(raw))
    return "does not match its checksum"


def swapped_data(d: Path, i: int, j: int) -> str:
    tmp = d / "swap"
    data(d, i).rename(tmp)
    data(d, j).rename(data(d, i))
    tmp.rename(data(d, j))
    return "does not match its checksum"


def swapped_points(d: Path, i: int, j: int) -> str:
    for path in (data, side):
        tmp = d / "swap"
        path(d, i).rename(tmp)
        path(d, j).rename(path(d, i))
        tmp.rename(path(d, j))
    return "it holds point"


def edited_value(d: Path, i: int, _other: int) -> str:
    record = json.loads(side(d, i).read_text(encoding="utf-8"))
    record["info"]["replications"] = 29
    side(d, i).write_text(json.dumps(record), encoding="utf-8")
    return "was altered"


def wrong_seed(d: Path, i: int, _other: int) -> str:
    reseal(side(d, i), lambda r: r["identity"].update(seed=6))
    return "with other seed than"


def wrong_replications(d: Path, i: int, _other: int) -> str:
    reseal(side(d, i), lambda r: r["identity"].update(replications=29))
    return "with other replications than"


def wrong_values(d: Path, i: int, _other: int) -> str:
    reseal(side(d, i), lambda r: r["identity"]["values"].update({"sites.plant.slots": 9}))
    return "with other values than"


def foreign_point(d: Path, i: int, _other: int) -> str:
    reseal(side(d, i), lambda r: r.update(store="0" * 64))
    return "belongs to another run"


def removed_sidecar(d: Path, i: int, _other: int) -> str:
    side(d, i).unlink()
    return "json is missing"


def removed_data(d: Path, i: int, _other: int) -> str:
    data(d, i).unlink()
    return "parquet is missing"


def empty_sidecar(d: Path, i: int, _other: int) -> str:
    side(d, i).write_bytes(b"")
    return "json is empty"


def garbled_sidecar(d: Path, i: int, _other: int) -> str:
    text = side(d, i).read_text(encoding="utf-8")
    side(d, i).write_text(text[: len(text) // 2], encoding="utf-8")
    return "not readable JSON"


def old_sidecar(d: Path, i: int, _other: int) -> str:
    side(d, i).write_text(json.dumps({"point": i, "seed": 5, "replications": 30, "precision": None}),
                          encoding="utf-8")
    return "not a point sidecar of this version"


def directory_not_file(d: Path, i: int, _other: int) -> str:
    data(d, i).unlink()
    data(d, i).mkdir()
    (data(d, i) / "x").write_text("x", encoding="utf-8")
    return "is not a regular file"


def symlink_elsewhere(d: Path, i: int, _other: int) -> str:
    # Even to a faithful copy: a saved point is a file of the store, not a link out of it.
    outside = d.parent.parent / f"elsewhere-{i}.parquet"
    shutil.copyfile(data(d, i), outside)
    data(d, i).unlink()
    data(d, i).symlink_to(outside)
    return "is a symbolic link"


def symlinked_sidecar(d: Path, i: int, _other: int) -> str:
    outside = d.parent.parent / f"elsewhere-{i}.json"
    shutil.copyfile(side(d, i), outside)
    side(d, i).unlink()
    side(d, i).symlink_to(outside)
    return "is a symbolic link"


#: Damage runs: each damages distinct saved points, one kind each (19 kinds in 7 resumes).
GROUPS: list[list[Callable[[Path, int, int], str]]] = [
    [truncate, empty_data, swapped_data],
    [random_bytes, flipped_byte, swapped_points],
    [edited_value, wrong_seed, wrong_values],
    [wrong_replications, foreign_point, removed_sidecar],
    [removed_data, empty_sidecar, garbled_sidecar],
    [old_sidecar, directory_not_file, symlink_elsewhere],
    [symlinked_sidecar],
]


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int], dict[str, str]]:
    """``(directory, saved points, digests of an uninterrupted run)``: a sweep SIGKILLed
    (with its workers) after at least 8 of its 12 points were saved."""
    root = tmp_path_factory.mktemp("sweep")
    (root / "s.yaml").write_text(SCENARIO, encoding="utf-8")
    ref = cli("sweep", "s.yaml", *SWEEP, "-j", "2", "--no-figures", "-o", "ref", cwd=root)
    assert ref.returncode == 0, ref.stderr
    saved = killed_mid_run(["sweep", "s.yaml", *SWEEP, "-j", "2", "--no-figures", "-o", "killed"], root,
                           root / "killed.partial" / "points", 8)
    assert 8 <= len(saved) < N_POINTS, "the sweep finished before the kill; make the points slower"
    assert not (root / "killed").exists()
    return root, saved, digests(root / "ref", SWEEP_FILES)


def resume_case(root: Path, name: str) -> tuple[Path, Path]:
    case = root / name
    case.mkdir()
    shutil.copytree(root / "killed.partial", case / "out.partial", symlinks=True)
    shutil.copyfile(root / "s.yaml", case / "s.yaml")
    return case, case / "out.partial" / "points"


def test_an_undamaged_store_resumes_without_recomputing(sweep_run: tuple[Path, list[int], dict[str, str]]) -> None:
    root, saved, ref = sweep_run
    case, points = resume_case(root, "clean")
    (points / "notes.txt").write_text("not a point", encoding="utf-8")  # an unknown file: ignored
    (points / f"{saved[0]:06d}.parquet.tmp").write_bytes(b"half a write")  # a write cut short: removed
    result = cli("sweep", "s.yaml", *SWEEP, "-j", "1", "--no-figures", "-o", "out", "--resume", cwd=case)
    assert result.returncode == 0, result.stderr
    assert not DISCARD.findall(result.stderr)
    assert "ignoring notes.txt" in result.stderr
    assert f"resuming: {len(saved)} of {N_POINTS} points already finished" in result.stderr
    assert digests(case / "out", SWEEP_FILES) == ref
    assert not (case / "out.partial").exists()


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: "+".join(f.__name__ for f in g))
def test_damaged_points_are_discarded_and_only_they_recomputed(
        sweep_run: tuple[Path, list[int], dict[str, str]], group: list[Callable[[Path, int, int], str]]) -> None:
    root, saved, ref = sweep_run
    case, points = resume_case(root, "+".join(f.__name__ for f in group))
    expected: dict[int, str] = {}
    free = list(saved)
    for damage in group:
        i = free.pop(0)
        j = free.pop() if damage in (swapped_data, swapped_points) else i
        reason = damage(points, i, j)
        expected[i] = reason
        if j != i:
            expected[j] = reason
    result = cli("sweep", "s.yaml", *SWEEP, "-j", "1", "--no-figures", "-o", "out", "--resume", cwd=case)
    assert result.returncode == 0, result.stderr
    found = {int(i): why for i, why in DISCARD.findall(result.stderr)}
    assert set(found) == set(expected), result.stderr  # one line for each damaged point, no other
    for i, reason in expected.items():
        assert reason in found[i], (i, found[i])
    kept = len(saved) - len(expected)
    assert f"resuming: {kept} of {N_POINTS} points already finished" in result.stderr
    assert digests(case / "out", SWEEP_FILES) == ref
    assert not (case / "out.partial").exists()
    for outside in root.glob("elsewhere-*"):  # a link's target is never touched
        assert outside.stat().st_size > 0


def test_a_store_without_its_points_directory_recomputes_everything(
        sweep_run: tuple[Path, list[int], dict[str, str]]) -> None:
    root, _saved, ref = sweep_run
    case, points = resume_case(root, "no-points")
    shutil.rmtree(points)
    points.write_text("not a directory", encoding="utf-8")
    result = cli("sweep", "s.yaml", *SWEEP, "-j", "2", "--no-figures", "-o", "out", "--resume", cwd=case)
    assert result.returncode == 0, result.stderr
    assert "is not a directory; every point will be computed again" in result.stderr
    assert f"resuming: 0 of {N_POINTS} points already finished" in result.stderr
    assert digests(case / "out", SWEEP_FILES) == ref


@pytest.mark.parametrize(("change", "args", "message"), [
    ("scenario", SWEEP, "different settings (scenario_sha256)"),
    ("design", ["--set", "sites.plant.slots=1,2,3", "--set", "arrivals.rate_per_year=50,60,70", "-n", "20"],
     "different settings (points, replications)"),
    ("seed", [*SWEEP, "--seed", "6"], "different settings (seeds)"),
    ("state", SWEEP, "state.json: unreadable"),
], ids=["scenario", "design", "seed", "state"])
def test_a_store_of_another_run_is_refused_untouched(
        sweep_run: tuple[Path, list[int], dict[str, str]], change: str, args: list[str], message: str) -> None:
    root, _saved, _ref = sweep_run
    case, _points = resume_case(root, f"refuse-{change}")
    text = SCENARIO.replace("horizon_days: 1500", "horizon_days: 1400") if change == "scenario" else SCENARIO
    (case / "s.yaml").write_text(text, encoding="utf-8")
    if change == "state":
        (case / "out.partial" / "state.json").write_text("{not json", encoding="utf-8")
    before = tree(case / "out.partial")
    result = cli("sweep", "s.yaml", *args, "-j", "1", "--no-figures", "-o", "out", "--resume", cwd=case)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert tree(case / "out.partial") == before
    assert not (case / "out").exists()


# --------------------------------------------------------------------------- psa and sensitivity share the store

PSA_SCENARIO = """\
name: {name}
horizon_days: 1500
replications: 4
seed: 5
currency: HKD
arrivals: {{rate_per_year: 60}}
cohorts:
  - name: adults
    share: 1
    pathway: main
    time_to_death: {{dist: exponential, mean: 400}}
    after_infusion:
      response_probability: 0.6
      survival_responder: {{dist: exponential, mean: 2000}}
      survival_non_responder: {{dist: exponential, mean: 300}}
pathways:
  main:
    steps:
      - {{name: manufacture, kind: manufacture, duration: {days}, cost: 300000, failure_probability: 0.05}}
      - {{name: infusion, kind: infusion, duration: 1, cost: 50000}}
economics:
  follow_up_years: 5
  utilities: {{waiting: 0.6, responder: 0.85, non_responder: 0.5, progressed: 0.4}}
  wtp: [200000, 500000]
uncertain:
  - path: cohorts.adults.after_infusion.response_probability
    name: response
    distribution: {{beta: {{mean: 0.6, sd: 0.08}}}}
"""


def _kill_damage_resume(root: Path, args: list[str], out: str, data_files: tuple[str, ...]) -> None:
    ref = cli(*args, "-o", "ref", cwd=root)
    assert ref.returncode == 0, ref.stderr
    saved = killed_mid_run([*args, "-o", out], root, root / f"{out}.partial" / "points", 4)
    assert 4 <= len(saved), saved
    points = root / f"{out}.partial" / "points"
    expected = {saved[0]: truncate(points, saved[0], saved[0]), saved[1]: swapped_points(points, saved[1], saved[2])}
    expected[saved[2]] = expected[saved[1]]
    result = cli(*args, "-o", out, "--resume", cwd=root)
    assert result.returncode == 0, result.stderr
    found = {int(i): why for i, why in DISCARD.findall(result.stderr)}
    assert set(found) == set(expected), result.stderr
    for i, reason in expected.items():
        assert reason in found[i]
    assert digests(root / out, data_files) == digests(root / "ref", data_files)


def test_psa_resume_checks_its_saved_runs(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(PSA_SCENARIO.format(name="a", days=20), encoding="utf-8")
    (tmp_path / "b.yaml").write_text(PSA_SCENARIO.format(name="b", days=45), encoding="utf-8")
    args = ["psa", "a.yaml", "b.yaml", "--sets", "12", "-n", "8", "-j", "2", "--no-figures"]
    _kill_damage_resume(tmp_path, args, "psa-out", ("ceac.csv", "evpi.csv", "evppi.csv", "psa.json",
                                                    "psa_parameters.csv", "psa_sets.csv", "psa_summary.csv"))


def test_sensitivity_resume_checks_its_saved_points(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(SCENARIO, encoding="utf-8")
    args = ["sensitivity", "s.yaml", "--method", "morris", "--trajectories", "3",
            "--param", "sites.plant.slots", "1", "4", "--param", "arrivals.rate_per_year", "40", "80",
            "-n", "20", "-j", "2", "--no-figures"]
    _kill_damage_resume(tmp_path, args, "sens-out", ("indices.csv", "points.csv", "summary.parquet",
                                                      "scenario.yaml", "sensitivity.json"))
