"""The commands of the README, the tutorial and the how-to guides work verbatim.

Every ```bash block of README.md, docs/tutorial.md and docs/how-to/*.md is run, one command at a
time, in a temporary copy of the checkout (the files ``git ls-files`` lists), with the bin
directory of the Python running the tests (the venv whose ``v2vsim`` is tested) first on PATH.
The conventions, which docs/development.md documents for authors:

- **Commands.** A line is one command, run by ``bash -o pipefail -c`` from the root of the copy;
  a line ending in ``\\`` continues on the next; blank lines and ``#`` comment lines are skipped,
  and a trailing ``# comment`` is bash's own.
- **Order.** Each file gets its own copy, and its commands run in the order written, so a later
  command may read what an earlier one wrote (``v2vsim report`` after ``v2vsim compare``).
- **Set-up is not re-run.** In a ``&&`` chain, the parts that create a virtual environment
  (``python3 -m venv``), activate one (``. .venv/bin/activate``, ``source ...``) or run
  ``pip install`` are dropped and the rest runs: CI has already done them. ``python -m pytest``
  (the suite running this test) is dropped the same way.
- **Directives**, in an HTML comment on the line(s) just before a block (blank lines between are
  allowed), several separated by spaces: ``<!-- test: skip -->`` does not run the block (cluster
  commands that need a scheduler); ``<!-- test: replications=5 -->`` replaces every
  ``-n N`` / ``--replications N`` in the block by 5, and ``sets=K`` every ``--sets N`` by K, to
  keep the test fast; ``<!-- test: write=PATH -->`` before a block of any language writes the
  block's text to PATH in the copy (a scenario file a how-to then validates and runs);
  ``<!-- test: exit=2 -->`` expects every command of the block to exit with that status (a
  documented error).
- **Failure.** A command fails the test when its exit status is not 0 (or the block's
  ``exit=N``) or it runs longer than ``TIMEOUT_SECONDS``; every command of a file is run, and
  the failures are reported together.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", ROOT / "docs" / "tutorial.md", *sorted((ROOT / "docs" / "how-to").glob("*.md"))]
TIMEOUT_SECONDS = 180

# --------------------------------------------------------------------------------------------
# Reading the commands out of Markdown
# --------------------------------------------------------------------------------------------

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)[^\n]*$")
_DIRECTIVE = re.compile(r"^\s*<!--\s*test:(?P<body>.*?)-->\s*$")
_SETUP = [
    re.compile(r"^python3?(\.\d+)? -m venv\b"),
    re.compile(r"^(\.|source) \S*activate\b"),
    re.compile(r"^(python3? -m )?pip3? install\b"),
    re.compile(r"^python3? -m pytest\b|^pytest\b"),
]


@dataclass
class Block:
    """A fenced block of a Markdown file, with the directives written just before it."""

    lang: str
    text: str
    line: int  # of the opening fence, counting from 1
    directives: dict[str, str] = field(default_factory=dict)


@dataclass
class Step:
    """What the test does for a block: run a command, or write a file."""

    line: int
    command: str = ""
    write: str = ""
    text: str = ""
    exit: int = 0


def blocks(markdown: str) -> list[Block]:
    """Every fenced block, with the ``<!-- test: ... -->`` directives that precede it."""
    lines = markdown.splitlines()
    out: list[Block] = []
    pending: dict[str, str] = {}
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        d = _DIRECTIVE.match(lines[i])
        if d:
            for word in d.group("body").split():
                key, _, value = word.partition("=")
                pending[key] = value
        elif m:
            fence, start, body = m.group("fence"), i, []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith(fence):
                body.append(lines[i][len(m.group("indent")):] if lines[i].startswith(m.group("indent")) else lines[i])
                i += 1
            out.append(Block(m.group("lang"), "\n".join(body) + "\n", start + 1, pending))
            pending = {}
        elif lines[i].strip():
            pending = {}  # a directive applies only to the block right after it
        i += 1
    return out


def _split_and(command: str) -> list[str]:
    """``a && b && c`` -> ``[a, b, c]``, not splitting inside quotes."""
    parts, buf, quote = [], [], ""
    i = 0
    while i < len(command):
        c = command[i]
        if quote:
            if c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
        elif command.startswith("&&", i):
            parts.append("".join(buf).strip())
            buf = []
            i += 2
            continue
        buf.append(c)
        i += 1
    parts.append("".join(buf).strip())
    return [p for p in parts if p]


def _strip_setup(command: str) -> str:
    kept = [p for p in _split_and(command) if not any(rx.search(p) for rx in _SETUP)]
    return " && ".join(kept)


def _replace_counts(command: str, directives: dict[str, str]) -> str:
    if "replications" in directives:
        command = re.sub(r"(?<!\S)(-n|--replications)(\s+|=)\d+", rf"\g<1>\g<2>{int(directives['replications'])}", command)
    if "sets" in directives:
        command = re.sub(r"(?<!\S)(--sets)(\s+|=)\d+", rf"\g<1>\g<2>{int(directives['sets'])}", command)
    return command


def steps(markdown: str) -> list[Step]:
    """What to do, in order, for a Markdown file: the commands of its bash blocks (conventions
    above) and the files its ``write=`` blocks write."""
    out: list[Step] = []
    for block in blocks(markdown):
        if "skip" in block.directives:
            continue
        if block.directives.get("write"):
            out.append(Step(block.line, write=block.directives["write"], text=block.text))
            continue
        if block.lang not in ("bash", "sh", "shell", "console"):
            continue
        buf, first = "", 0
        for k, raw in enumerate(block.text.splitlines()):
            line = raw.rstrip()
            if not buf:
                first = block.line + 1 + k
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
            if line.endswith("\\"):
                buf += line[:-1] + " "
                continue
            command = _replace_counts(_strip_setup(buf + line), block.directives)
            buf = ""
            if command:
                out.append(Step(first, command=command, exit=int(block.directives.get("exit") or 0)))
    return out


# --------------------------------------------------------------------------------------------
# The conventions, on hand-written examples
# --------------------------------------------------------------------------------------------

EXAMPLE = """\
# Title

```bash
python3 -m venv .venv && . .venv/bin/activate && pip install -e . && v2vsim run a.yaml
python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[test]" && python -m pytest
```

<!-- test: replications=5 sets=7 -->

```bash
# a comment line
v2vsim run a.yaml -n 200 --seed 3   # trailing comment
v2vsim psa a.yaml b.yaml --sets 1000 --replications=50 \\
    --jobs 2
v2vsim capacity a.yaml --target "queue_wait_mean<=7" --min-slots 2
```

<!-- test: skip -->
```bash
dask scheduler
```

<!-- test: write=my.yaml -->
```yaml
name: x
```

<!-- test: exit=2 -->
```bash
v2vsim validate broken.yaml
```

Some text.

<!-- test: replications=5 -->
Text between the directive and the block cancels it.

```bash
v2vsim run my.yaml -n 100
```

```python
print("not run")
```
"""


def test_the_conventions_on_a_hand_written_file() -> None:
    assert [(s.command, s.write, s.text, s.exit) for s in steps(EXAMPLE)] == [
        ("v2vsim run a.yaml", "", "", 0),
        ("v2vsim run a.yaml -n 5 --seed 3   # trailing comment", "", "", 0),
        ("v2vsim psa a.yaml b.yaml --sets 7 --replications=5      --jobs 2", "", "", 0),
        ('v2vsim capacity a.yaml --target "queue_wait_mean<=7" --min-slots 2', "", "", 0),
        ("", "my.yaml", "name: x\n", 0),
        ("v2vsim validate broken.yaml", "", "", 2),
        ("v2vsim run my.yaml -n 100", "", "", 0),
    ]
    assert [s.line for s in steps(EXAMPLE)][:3] == [4, 12, 13]


def test_and_chains_split_outside_quotes_only() -> None:
    assert _split_and("a && b 'x && y' && \"c&&d\"") == ["a", "b 'x && y'", '"c&&d"']
    assert _strip_setup("pip install -e '.[docs]' && mkdocs build --strict") == "mkdocs build --strict"
    assert _strip_setup("source .venv/bin/activate") == ""


# --------------------------------------------------------------------------------------------
# Running them
# --------------------------------------------------------------------------------------------


def _tracked_files() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        # Not a git checkout (an unpacked archive): everything but what a checkout does not hold.
        skip = {".git", ".venv", ".ci-venv", "venv", "results", "site", "build", "dist", "__pycache__"}
        return [str(p.relative_to(ROOT)) for p in ROOT.rglob("*")
                if p.is_file() and not set(p.relative_to(ROOT).parts) & skip]
    return [f for f in out.decode().split("\0") if f]


def checkout_copy(dest: Path) -> Path:
    """A copy of the checkout's tracked files, as a fresh clone would have them."""
    for rel in _tracked_files():
        src = ROOT / rel
        if src.is_file():  # a tracked file deleted in the working tree is not copied
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    return dest


def command_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.update(MPLBACKEND="Agg", COLUMNS="100", NO_COLOR="1", TERM="dumb", NO_MKDOCS_2_WARNING="1")
    env.pop("PYTHONPATH", None)
    return env


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_documented_commands_work_verbatim(document: Path, tmp_path: Path) -> None:
    todo = steps(document.read_text(encoding="utf-8"))
    assert any(s.command for s in todo), f"{document.name} has no command to run"
    copy = checkout_copy(tmp_path / "checkout")
    env = command_env()
    failures: list[str] = []
    for step in todo:
        where = f"{document.relative_to(ROOT)}:{step.line}"
        if step.write:
            target = copy / step.write
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(step.text, encoding="utf-8")
            continue
        start = time.perf_counter()
        try:
            done = subprocess.run(["bash", "-o", "pipefail", "-c", step.command], cwd=copy, env=env,
                                  capture_output=True, text=True, timeout=TIMEOUT_SECONDS,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            failures.append(f"{where}: `{step.command}` ran longer than {TIMEOUT_SECONDS} s")
            continue
        seconds = time.perf_counter() - start
        print(f"{where}: {seconds:5.1f} s  exit {done.returncode}  {step.command}")
        if done.returncode != step.exit:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
            expected = f" (expected {step.exit})" if step.exit else ""
            failures.append(f"{where}: `{step.command}` exited {done.returncode}{expected}:\n{tail}")
    assert not failures, "\n\n".join(failures)
