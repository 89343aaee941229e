"""Long sweeps survive: a real ``v2vsim sweep`` process is stopped with SIGTERM, keeps its
finished points, and ``--resume`` ends with exactly the result of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal
from typer.testing import CliRunner

from v2vsim import experiments as ex
from v2vsim.cli import app
from scenario_texts import RESUMABLE as TINY


SWEEP = ["--set", "sites.plant.slots=1,2,3,4", "--set", "arrivals.rate_per_year=50,60,70", "-n", "12"]
N_POINTS = 12


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_keeps_finished_points_and_resume_completes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(TINY, encoding="utf-8")
    out = tmp_path / "sweep"
    partial = tmp_path / "sweep.partial"
    points_dir = partial / "points"
    proc = subprocess.Popen(
        # What the `v2vsim` console script runs.
        [sys.executable, "-c", "from v2vsim.cli import main; main()", "sweep", str(scenario), *SWEEP,
         "-j", "2", "--no-figures", "-o", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"},
    )
    try:
        deadline = time.monotonic() + 60
        while not (points_dir.is_dir() and any(points_dir.glob("*.json"))):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no point finished within 60 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 128 + signal.SIGTERM, (stdout, stderr)
    kept = sorted(int(p.stem) for p in points_dir.glob("*.json"))
    assert 1 <= len(kept) < N_POINTS, "the sweep finished before the signal; make the points slower"
    assert f"interrupted: {len(kept)} finished point" in stderr and "--resume" in stderr
    assert not out.exists()
    assert not list(points_dir.glob("*.tmp"))
    for index in kept:  # every kept point is complete and readable
        assert len(pd.read_parquet(points_dir / f"{index:06d}.parquet")) == 12

    # Without --resume the partial state is never silently discarded.
    runner = CliRunner()
    refused = runner.invoke(app, ["sweep", str(scenario), *SWEEP, "-j", "1", "--no-figures", "-o", str(out)])
    assert refused.exit_code == 2 and "--resume" in refused.output

    computed: list[int] = []
    original = ex.checkpoints.run_points

    def counting(points, *args, **kwargs):  # type: ignore[no-untyped-def]
        computed.extend(p.index for p in points)
        return original(points, *args, **kwargs)

    monkeypatch.setattr(ex.checkpoints, "run_points", counting)
    resumed = runner.invoke(app, ["sweep", str(scenario), *SWEEP, "-j", "1", "--no-figures", "-o", str(out), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert f"resuming: {len(kept)} of {N_POINTS} points already finished" in resumed.output
    assert sorted(computed) == sorted(set(range(N_POINTS)) - set(kept))  # nothing recomputed
    assert not partial.exists()

    monkeypatch.setattr(ex.checkpoints, "run_points", original)
    fresh = runner.invoke(app, ["sweep", str(scenario), *SWEEP, "-j", "2", "--no-figures", "-o", str(tmp_path / "fresh")])
    assert fresh.exit_code == 0, fresh.output
    for name in ("sweep.csv", "points.csv"):
        assert (out / name).read_bytes() == (tmp_path / "fresh" / name).read_bytes()
    assert_frame_equal(pd.read_parquet(out / "replications.parquet"),
                       pd.read_parquet(tmp_path / "fresh" / "replications.parquet"))


def test_resume_with_other_settings_is_refused(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(TINY.replace("horizon_days: 1500", "horizon_days: 100"), encoding="utf-8")
    store = ex.PointStore(tmp_path / "x", {"kind": "sweep", "replications": [4]})
    store.open(resume=False)
    other = ex.PointStore(tmp_path / "x", {"kind": "sweep", "replications": [5]})
    with pytest.raises(ex.StoreError, match="different settings \\(replications\\)"):
        other.open(resume=True)
    assert store.open(resume=True) == set()
