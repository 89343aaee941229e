"""Stopping every command that starts workers: Ctrl-C or SIGTERM to its process group.

    python benchmarks/stop_signals.py                     # 4 trials per command
    python benchmarks/stop_signals.py --trials 12 --commands run compare

Each trial writes an earlier results directory, starts the command again on it (``--force``)
in a process group of its own (as a terminal, ``timeout`` or a batch scheduler does), sends
SIGINT or SIGTERM to the whole group at a random (seeded) moment, and checks: the command
exits 130 (SIGINT) or 143 (SIGTERM) within ``--within`` seconds, no process of the group is
left, and the earlier directory is byte-identical. A hang is ended with SIGKILL to the group.
Prints, per command, the trials that stopped correctly, hung, exited otherwise, left a worker
behind or changed the earlier results.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Each command (the bundled scenarios, at least three times as long as its signal moment with
#: two free workers, so that it is still running when a trial signals it) and the longest moment
#: after its start at which a trial sends the signal.
COMMANDS: dict[str, tuple[list[str], float]] = {
    "run": (["run", "local", "-n", "900", "-j", "2"], 6.0),
    "compare": (["compare", "local", "overseas", "-n", "300", "-j", "2"], 9.0),
    "capacity": (["capacity", "local", "--site", "hkib", "--target", "queue_wait_mean<=7", "-n", "2400",
                  "-j", "2", "--engine", "simpy", "--no-figures"], 5.0),
    "sweep": (["sweep", "local", "--set", "sites.hkib.slots=1,2,3", "-n", "1800", "-j", "2",
               "--engine", "simpy", "--no-figures"], 4.0),
    "psa": (["psa", "economics_local", "--sets", "90", "-n", "10", "-j", "2", "--no-figures"], 5.0),
}
#: The small run that writes the earlier results directory of each command.
EARLIER: dict[str, list[str]] = {
    "run": ["run", "local", "-n", "4", "-j", "1", "--no-figures"],
    "compare": ["compare", "local", "overseas", "-n", "4", "-j", "1", "--no-figures"],
    "capacity": ["capacity", "local", "--site", "hkib", "--target", "queue_wait_mean<=7", "-n", "4",
                 "-j", "1", "--no-figures"],
    "sweep": ["sweep", "local", "--set", "sites.hkib.slots=1,2", "-n", "4", "-j", "1", "--no-figures"],
    "psa": ["psa", "economics_local", "--sets", "2", "-n", "2", "-j", "1", "--no-figures"],
}


@dataclass
class Trial:
    command: str
    signum: int
    delay: float
    returncode: int | None  # None: it hung (killed with SIGKILL)
    seconds: float
    left: list[int]  # processes of the group still there after the command ended
    intact: bool
    stderr: str
    ended_first: bool = False  # the command had finished before the signal: no stop to judge

    @property
    def expected(self) -> int:
        return 128 + self.signum

    @property
    def ok(self) -> bool:
        return self.returncode == self.expected and not self.left and self.intact


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "COLUMNS": "200"}


def v2vsim(args: Sequence[str], **kw: object) -> subprocess.Popen[bytes]:
    """``python -m v2vsim ARGS`` of this checkout, in a new session (its own process group)."""
    return subprocess.Popen([sys.executable, "-m", "v2vsim", *args], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True, **kw)  # type: ignore[call-overload]


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes whose process group is ``pgid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(entry))
    return found


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def earlier_results(command: str, folder: Path) -> Path:
    out = folder / f"{command}-out"
    if not out.exists():
        proc = v2vsim([*EARLIER[command], "-o", str(out)], cwd=folder)
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr.decode()[-2000:]
    return out


def trial(command: str, signum: int, delay: float, folder: Path, within: float = 10.0,
          gone_within: float = 3.0, after_workers: bool = False, repeat: int = 1) -> Trial:
    """One trial: signal ``signum`` to the group ``delay`` s after the start of ``command``
    (``after_workers``: after its first worker process started), ``repeat`` times 50 ms apart."""
    out = earlier_results(command, folder)
    before = snapshot(out)
    args, _ = COMMANDS[command]
    proc = v2vsim([*args, "-o", str(out), "--force"], cwd=folder)
    pgid = proc.pid
    if after_workers:
        deadline = time.monotonic() + 60
        while len(group_members(pgid)) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
    time.sleep(delay)
    ended_first = proc.poll() is not None
    for i in range(repeat):
        try:
            os.killpg(pgid, signum)
        except ProcessLookupError:  # ended already
            pass
        if i + 1 < repeat:
            time.sleep(0.05)
    sent = time.monotonic()
    try:
        _, stderr = proc.communicate(timeout=within)
        returncode: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        returncode = None
    seconds = time.monotonic() - sent
    deadline = time.monotonic() + gone_within
    left = group_members(pgid)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = group_members(pgid)
    if returncode is None or left:
        with_kill = left
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _, stderr = proc.communicate()
        left = with_kill
    # An interrupted sweep or psa keeps its finished points for --resume: not for the next trial.
    shutil.rmtree(out.with_name(out.name + ".partial"), ignore_errors=True)
    return Trial(command, signum, delay, returncode, seconds, left, snapshot(out) == before,
                 stderr.decode(errors="replace"), ended_first)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4, help="trials per command (default 4)")
    parser.add_argument("--commands", nargs="+", default=list(COMMANDS), choices=list(COMMANDS))
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--within", type=float, default=10.0, help="seconds counted as a hang")
    parser.add_argument("-v", "--verbose", action="store_true", help="each trial, and stderr of failed ones")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print(f"{'command':<9} {'trials':>6} {'correct':>7} {'hung':>5} {'other exit':>10} "
              f"{'left':>5} {'changed':>7}  slowest stop")
        for command in args.commands:
            trials = []
            first = 0
            while len(trials) < args.trials:
                signum = rng.choice([signal.SIGINT, signal.SIGTERM])
                t = trial(command, signum, rng.uniform(0.2, COMMANDS[command][1]), folder, args.within)
                if t.ended_first:  # finished before the signal (a fast machine): draw again
                    first += 1
                    if first > 3 * args.trials:
                        raise SystemExit(f"{command} keeps finishing before the signal: lengthen it")
                    continue
                trials.append(t)
                if args.verbose:
                    print(f"  {command} {signal.Signals(t.signum).name} at {t.delay:.2f} s: "
                          f"exit {t.returncode} after {t.seconds:.2f} s, left {t.left}, intact {t.intact}")
                    if not t.ok:
                        print("    " + t.stderr[-1500:].replace("\n", "\n    "))
            hung = sum(t.returncode is None for t in trials)
            other = sum(t.returncode is not None and t.returncode != t.expected for t in trials)
            left = sum(bool(t.left) for t in trials)
            changed = sum(not t.intact for t in trials)
            correct = sum(t.ok for t in trials)
            bad += len(trials) - correct
            slowest = max((t.seconds for t in trials if t.returncode is not None), default=float("nan"))
            print(f"{command:<9} {len(trials):>6} {correct:>7} {hung:>5} {other:>10} {left:>5} {changed:>7}  "
                  f"{slowest:.2f} s", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
