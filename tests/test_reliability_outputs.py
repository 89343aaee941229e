"""Results directories are never lost or hidden: one writer per target, a swap that a signal
cannot cut in half, debris of killed runs cleaned, nothing replaced silently, the target checked
before simulating, symbolic links and the umask respected, ``verify`` on malformed manifests,
and figures that fail never costing the data files.

Where the failure is about processes the tests use real subprocesses and real signals; the
moment between the swap's two renames is widened with the test hook ``V2VSIM_TEST_SWAP_PAUSE``.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import v2vsim.outputs.results_dir as rd
from v2vsim.cli import app
from scenario_texts import SMALL as SMALL_5

runner = CliRunner()

SMALL = SMALL_5.replace("replications: 5", "replications: 4")


@pytest.fixture
def small(tmp_path: Path) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    return path


@pytest.fixture
def other(tmp_path: Path) -> Path:
    path = tmp_path / "other.yaml"
    path.write_text(SMALL.replace("name: small test", "name: other test").replace("slots: 2", "slots: 3"))
    return path


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def text(result) -> str:
    return " ".join(result.output.split())


def spawn(*args: object, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "v2vsim", *map(str, args)], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env={**os.environ, **(env or {})})


def wait_for(predicate, timeout: float = 90.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process ended first ({proc.returncode}): {proc.stderr.read()}")
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def debris(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# --------------------------------------------------------------------------- item 4: lock and swap


def test_a_second_run_on_the_same_target_is_refused_at_once(small: Path, tmp_path: Path) -> None:
    out = tmp_path / "res"
    first = spawn("run", small, "-o", out, "-n", "100000", "-j", "1", "--no-figures", cwd=tmp_path)
    try:
        wait_for(lambda: (tmp_path / ".res.lock").exists(), proc=first)
        started = time.monotonic()
        second = subprocess.run([sys.executable, "-m", "v2vsim", "run", str(small), "-o", str(out),
                                 "--no-figures"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        took = time.monotonic() - started
        assert second.returncode == 2, second.stderr
        assert f"another v2vsim is writing {out} (pid {first.pid})" in " ".join(second.stderr.split())
        assert "Traceback" not in second.stderr
        assert took < 30  # refused before simulating (the import alone takes a few seconds)
    finally:
        os.killpg(first.pid, signal.SIGINT)
        _, stderr = first.communicate(timeout=60)
    assert first.returncode == 130, stderr
    assert not out.exists() and debris(tmp_path, "res") == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_swap_is_delivered_after_it(small: Path, tmp_path: Path, signum: int) -> None:
    out = tmp_path / "res"
    assert invoke("run", small, "-o", out, "--no-figures", "--seed", "1").exit_code == 0
    before = snapshot(out)
    proc = spawn("run", small, "-o", out, "--no-figures", "--seed", "2", "-j", "1", cwd=tmp_path,
                 env={"V2VSIM_TEST_SWAP_PAUSE": "2"})
    wait_for(lambda: (tmp_path / f".res.old-{proc.pid}").exists(), proc=proc)
    os.killpg(proc.pid, signum)  # the old directory is aside and the new not yet in place
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode in (130, 128 + signum), stderr
    assert "Traceback" not in stderr
    assert f"the results were written to {out}/" in " ".join(stderr.split())
    assert "untouched" not in stderr
    assert debris(tmp_path, "res") == []  # the old directory is removed, not left aside
    after = snapshot(out)
    assert after != before and json.loads(after["manifest.json"])["seed"] == 2
    assert not rd.verify_dir(out)


def test_sigkill_during_the_swap_is_recovered_by_verify_and_by_the_next_run(small: Path,
                                                                              tmp_path: Path) -> None:
    out = tmp_path / "res"
    assert invoke("run", small, "-o", out, "--no-figures", "--seed", "1").exit_code == 0
    before = snapshot(out)
    for recover_with in ("verify", "run"):
        proc = spawn("run", small, "-o", out, "--no-figures", "--seed", "2", "-j", "1", cwd=tmp_path,
                     env={"V2VSIM_TEST_SWAP_PAUSE": "5"})
        wait_for(lambda: (tmp_path / f".res.old-{proc.pid}").exists(), proc=proc)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
        assert not out.exists()  # killed between the renames: the old results are aside
        if recover_with == "verify":
            result = invoke("verify", out)
            assert result.exit_code == 0, result.output
            assert snapshot(out) == before
        else:
            result = invoke("run", small, "-o", out, "--no-figures", "--seed", "3")
            assert result.exit_code == 0, result.output
            assert "restored" in text(result)
            assert json.loads((out / "manifest.json").read_text())["seed"] == 3
        assert debris(tmp_path, "res") == []


# --------------------------------------------------------------------------- item 2: debris


def test_sigkill_while_writing_leaves_debris_that_the_next_run_removes(small: Path, tmp_path: Path) -> None:
    out = tmp_path / "res"
    assert invoke("run", small, "-o", out, "--no-figures").exit_code == 0
    before = snapshot(out)
    proc = spawn("run", small, "-o", out, "-n", "40", "-j", "1", cwd=tmp_path)  # figures: a long write
    wait_for(lambda: any(".tmp-" in n for n in debris(tmp_path, "res")), proc=proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    left = [n for n in debris(tmp_path, "res") if ".tmp-" in n]
    assert left and left[0].startswith(f".res.tmp-{proc.pid}-")
    assert snapshot(out) == before
    # A live process's temporary directory is never touched; a dead one's is.
    alive = tmp_path / f".res.tmp-{os.getpid()}-live"
    alive.mkdir()
    gone = tmp_path / f".res.tmp-{dead_pid()}-gone"
    gone.mkdir()
    result = invoke("run", small, "-o", out, "--no-figures")
    assert result.exit_code == 0, result.output
    assert debris(tmp_path, "res") == [alive.name]


# --------------------------------------------------------------------------- item 5: no silent replace


def test_results_are_replaced_only_by_the_same_command_on_the_same_scenarios(
        small: Path, other: Path, tmp_path: Path) -> None:
    hk = tmp_path / "hk"
    third = tmp_path / "third.yaml"
    third.write_text(SMALL.replace("name: small test", "name: third test"))
    result = invoke("compare", small, other, third, "-o", hk, "--no-figures", "-n", "2")
    assert result.exit_code == 0, result.output
    before = snapshot(hk)
    result = invoke("run", small, "-o", hk, "--no-figures", "-n", "2")
    assert result.exit_code == 2
    assert (f"{hk} holds a comparison of 3 scenarios (small.yaml, other.yaml, third.yaml) written by "
            "`v2vsim compare`") in text(result)
    assert "--force" in text(result) and "replications" not in text(result)  # before simulating
    result = invoke("compare", small, other, "-o", hk, "--no-figures", "-n", "2")
    assert result.exit_code == 2 and "of other scenarios" in text(result)
    assert snapshot(hk) == before
    # The same scenarios, in another order, replace it; --force replaces anything.
    assert invoke("compare", other, third, small, "-o", hk, "--no-figures", "-n", "2").exit_code == 0
    assert invoke("run", small, "-o", hk, "--no-figures", "-n", "2", "--force").exit_code == 0
    run_dir = tmp_path / "run"
    assert invoke("run", small, "-o", run_dir, "--no-figures", "-n", "2").exit_code == 0
    result = invoke("run", other, "-o", run_dir, "--no-figures", "-n", "2")
    assert result.exit_code == 2 and "holds the results of a run of small.yaml" in text(result)
    small.write_text(SMALL.replace("slots: 2", "slots: 4"))  # an edited scenario is the same scenario
    assert invoke("run", small, "-o", run_dir, "--no-figures", "-n", "2").exit_code == 0
    moved = tmp_path / "moved.yaml"  # so is a moved one (same content)
    moved.write_bytes(small.read_bytes())
    assert invoke("run", moved, "-o", run_dir, "--no-figures", "-n", "2").exit_code == 0


def test_a_run_without_figures_does_not_silently_delete_figures(small: Path, tmp_path: Path) -> None:
    out = tmp_path / "res"
    assert invoke("run", small, "-o", out, "-n", "2").exit_code == 0
    before = snapshot(out)
    assert any(name.startswith("figures/") for name in before)
    result = invoke("run", small, "-o", out, "-n", "2", "--no-figures")
    assert result.exit_code == 2 and "figures, which a run with --no-figures would delete" in text(result)
    assert snapshot(out) == before
    assert invoke("run", small, "-o", out, "-n", "2", "--no-figures", "--force").exit_code == 0
    assert not (out / "figures").exists()


# --------------------------------------------------------------------------- item 6: the target


def test_targets_that_cannot_be_written_are_refused_before_simulating(small: Path, tmp_path: Path,
                                                                       monkeypatch) -> None:
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    cases = {
        a_file: "exists and is not a directory",
        dangling: "which does not exist",
        Path("/proc/v2vsim-results"): "is under /proc",
        Path("/sys/v2vsim-results"): "is under /sys",
        tmp_path / ("x" * 240): "the name is 240 bytes",
        tmp_path: "contains",
    }
    monkeypatch.chdir(tmp_path)
    for target, message in cases.items():
        for force in ([], ["--force"]):
            result = invoke("run", small, "-o", target, "--no-figures", *force)
            assert result.exit_code == 2, (target, result.output)
            assert message in text(result) and "replications" not in text(result), (target, result.output)
            assert result.exception is None or isinstance(result.exception, SystemExit)
    result = invoke("run", small, "-o", ".", "--force", "--no-figures")
    assert result.exit_code == 2 and "working directory" in text(result)
    assert a_file.read_text() == "x" and small.is_file() and dangling.is_symlink()
    assert len(("x" * rd.NAME_MAX_BYTES).encode()) + len(f"..tmp-{2 ** 32}-12345678") <= 255


def test_too_little_free_space_is_refused_before_simulating(small: Path, tmp_path: Path, monkeypatch) -> None:
    real = rd.shutil.disk_usage
    monkeypatch.setattr(rd.shutil, "disk_usage", lambda p: real(p)._replace(free=5 << 20))
    result = invoke("run", small, "-o", tmp_path / "res", "-n", "2")
    assert result.exit_code == 2, result.output
    assert "estimated" in text(result) and "5.0 MB free" in text(result)
    assert "replications" not in text(result) and not (tmp_path / "res").exists()
    assert invoke("run", small, "-o", tmp_path / "res", "-n", "2", "--no-figures").exit_code == 0


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_a_failing_file_system_during_the_write_is_one_line(small: Path, tmp_path: Path, monkeypatch,
                                                           code: int) -> None:
    out = tmp_path / "res"
    assert invoke("run", small, "-o", out, "--no-figures", "-n", "2").exit_code == 0
    before = snapshot(out)

    def failing(root: Path) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(rd, "_fsync_tree", failing)
    result = invoke("run", small, "-o", out, "--no-figures", "-n", "3")
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and os.strerror(code) in errors[0] and "earlier results are untouched" in errors[0]
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert snapshot(out) == before and debris(tmp_path, "res") == []


def _mount(*args: str) -> bool:
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@pytest.fixture
def tiny_disk(tmp_path: Path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if not _mount("-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)):
        pytest.skip("cannot mount a tmpfs here (needs root and mount permission); the in-process "
                    "ENOSPC, EROFS and EACCES test covers the same code")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_real_full_disk_and_read_only_mount(small: Path, tiny_disk: Path, monkeypatch) -> None:
    out = tiny_disk / "res"
    assert invoke("run", small, "-o", out, "--no-figures", "-n", "2").exit_code == 0
    before = snapshot(out)
    # The estimate (figures alone are put at 16 MB) refuses before simulating ...
    result = invoke("run", small, "-o", out, "-n", "2")
    assert result.exit_code == 2 and "free" in text(result)
    # ... and without it the disk fills during the write: one line, exit 1, nothing replaced.
    monkeypatch.setattr(rd, "estimated_bytes", lambda *a, **k: 0)
    result = invoke("run", small, "-o", out, "-n", "100", "--csv", "--set", "arrivals.rate_per_year=400",
                    "--no-figures")
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0], result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert snapshot(out) == before and debris(tiny_disk, "res") == []
    assert _mount("-o", "remount,ro", str(tiny_disk))
    result = invoke("run", small, "-o", out, "--no-figures", "-n", "2")
    assert result.exit_code == 2 and "Read-only file system" in text(result), result.output
    assert "replications" not in text(result) and snapshot(out) == before


# --------------------------------------------------------------------------- item 7: links, umask


def test_a_symbolic_link_is_followed_and_kept(small: Path, tmp_path: Path) -> None:
    real = tmp_path / "store" / "res"
    real.parent.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    assert invoke("run", small, "-o", real, "--no-figures", "--seed", "1").exit_code == 0
    result = invoke("run", small, "-o", link, "--no-figures", "--seed", "2")
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert json.loads((real / "manifest.json").read_text())["seed"] == 2
    assert debris(tmp_path, "link") == [] and debris(real.parent, "res") == []
    assert not rd.verify_dir(link)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_results_directories_respect_the_umask(small: Path, tmp_path: Path, umask: int) -> None:
    previous = os.umask(umask)
    try:
        result = invoke("run", small, "-o", tmp_path / "res", "--no-figures", "-n", "2")
    finally:
        os.umask(previous)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "res").stat().st_mode & 0o777 == 0o777 & ~umask
    assert (tmp_path / "res" / "summary.csv").stat().st_mode & 0o777 == 0o666 & ~umask


# --------------------------------------------------------------------------- item 9: verify


@pytest.mark.parametrize("manifest", [
    '{"v2vsim_version": "1", "files": ["summary.csv"]}',
    '{"v2vsim_version": "1", "files": null}',
    '{"v2vsim_version": "1", "files": "summary.csv"}',
    '{"v2vsim_version": "1"}',
    '{"v2vsim_version": "1", "files": {"summary.csv": 12}}',
    '{"v2vsim_version": "1", "files": {"summary.csv": null}}',
    '{"v2vsim_version": "1", "files": {"summary.csv": "abc"}}',
    '{"v2vsim_version": "1", "files": {"../../etc/passwd": "' + "0" * 64 + '"}}',
    '{"v2vsim_version": "1", "files": {"summary.csv": ["x"]}}',
    "not json at all {",
    "[1, 2, 3]",
    "null",
    '"a string"',
    "",
])
def test_verify_reports_a_malformed_manifest(tmp_path: Path, manifest: str) -> None:
    out = tmp_path / "res"
    out.mkdir()
    (out / "summary.csv").write_text("a\n1\n")
    (out / "manifest.json").write_text(manifest)
    result = invoke("verify", out)
    assert result.exit_code == 1, result.output
    assert "malformed manifest" in text(result)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    bad = out / "manifest.json"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    result = invoke("verify", out)
    assert result.exit_code == 1 and "malformed manifest" in text(result)


# --------------------------------------------------------------------------- item 10: figures


def test_a_failing_figure_never_costs_the_data_files(small: Path, other: Path, tmp_path: Path,
                                                     monkeypatch) -> None:
    import v2vsim.outputs.figures as figures

    def broken(*args, **kwargs):
        raise ValueError("Unknown symbol: \\badcommand")

    monkeypatch.setattr(figures, "run_figures", broken)
    out = tmp_path / "res"
    result = invoke("run", small, "-o", out, "-n", "2")
    assert result.exit_code == 1, result.output
    assert ("error: figure the figures of small test failed: ValueError: Unknown symbol: \\badcommand"
            in result.output)
    assert f"the data files and the other figures were written to {out}/" in text(result)
    for name in ("patients.parquet", "summary.csv", "replications.csv", "scenario.yaml"):
        assert (out / name).is_file(), name
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["figure_failures"][0]["error"].startswith("ValueError")
    assert not rd.verify_dir(out) and debris(tmp_path, "res") == []
    # A comparison's figures too; the scenarios' own data and the comparison tables are written.
    monkeypatch.setattr(figures, "comparison_figures", broken)
    result = invoke("compare", small, other, "-o", tmp_path / "cmp", "-n", "2")
    assert result.exit_code == 1, result.output
    assert "error: figure the comparison figures failed" in result.output
    assert (tmp_path / "cmp" / "comparison.csv").is_file() and not rd.verify_dir(tmp_path / "cmp")


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_failing_figure_costs_only_that_figure(small: Path, tmp_path: Path, monkeypatch, jobs: str) -> None:
    import v2vsim.outputs.figures.run as run_figures

    def broken(*args, **kwargs):
        raise ValueError("no incidence today")

    monkeypatch.setattr(run_figures, "cumulative_incidence_figure", broken)  # forked workers too
    out = tmp_path / "res"
    result = invoke("run", small, "-o", out, "-n", "2", "-j", jobs)
    assert result.exit_code == 1, result.output
    assert "error: figure cumulative_incidence failed: ValueError: no incidence today" in result.output
    figures = sorted(p.name for p in (out / "figures").iterdir())
    assert figures == sorted(f"{stem}.{ext}" for stem in ("vein_to_vein", "attrition_funnel",
                                                           "site_utilisation", "waitlist", "journey")
                             for ext in ("png", "svg")), figures
    manifest = json.loads((out / "manifest.json").read_text())
    assert [f["figures"] for f in manifest["figure_failures"]] == ["cumulative_incidence"]
    assert not rd.verify_dir(out)


def test_the_experiment_commands_follow_the_same_rules(small: Path, tmp_path: Path, monkeypatch) -> None:
    import v2vsim.cli.experiments as cx

    out = tmp_path / "res"
    assert invoke("run", small, "-o", out, "--no-figures", "-n", "2").exit_code == 0
    before = snapshot(out)
    result = invoke("sweep", small, "--set", "sites.dev.slots=1,2", "-n", "2", "-o", out)
    assert result.exit_code == 2, result.output
    assert "holds the results of a run of small.yaml written by `v2vsim run`; this `v2vsim sweep`" in text(result)
    assert snapshot(out) == before

    def broken(*args, **kwargs):
        raise RuntimeError("no figure today")

    monkeypatch.setattr(cx, "_sweep_figures", broken)
    sweep = tmp_path / "sweep"
    result = invoke("sweep", small, "--set", "sites.dev.slots=1,2", "-n", "2", "-o", sweep)
    assert result.exit_code == 1, result.output
    assert "error: figure sweep figures failed: RuntimeError: no figure today" in result.output
    assert (sweep / "sweep.csv").is_file() and not rd.verify_dir(sweep)


def test_verify_of_a_missing_directory_creates_nothing(tmp_path: Path) -> None:
    result = invoke("verify", tmp_path / "no" / "such")
    assert result.exit_code == 1 and "not a v2vsim results directory" in text(result)
    assert not (tmp_path / "no").exists()


def test_a_sweep_stopped_during_the_swap_keeps_no_partial_points(small: Path, tmp_path: Path) -> None:
    out = tmp_path / "sw"
    sweep = ["sweep", small, "--set", "sites.dev.slots=1,2", "-n", "2", "-j", "1", "--no-figures", "-o", out]
    assert invoke(*sweep, "--seed", "1").exit_code == 0
    proc = spawn(*sweep, "--seed", "2", cwd=tmp_path, env={"V2VSIM_TEST_SWAP_PAUSE": "2"})
    wait_for(lambda: (tmp_path / f".sw.old-{proc.pid}").exists(), proc=proc)
    os.killpg(proc.pid, signal.SIGTERM)  # between the swap's two renames
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode in (130, 143), stderr
    assert f"the results were written to {out}/" in " ".join(stderr.split())
    assert (out / "sweep.csv").is_file() and not rd.verify_dir(out)
    assert sorted(os.listdir(tmp_path)) == ["small.yaml", "sw"]
