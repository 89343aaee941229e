"""``v2vsim report -o report.pdf`` and ``--pdf``: the report printed by headless Chromium, read
back with pypdf (pages, A4, the text extractable, the paired-difference column on the page)."""

from __future__ import annotations

import subprocess
import unicodedata
import sys
from pathlib import Path

import pytest
from pypdf import PdfReader

from scenario_texts import SMALL
from test_report import chromium  # noqa: F401  (fails under CI when Chromium is missing)


@pytest.fixture(scope="module")
def compare_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pdf")
    (root / "a.yaml").write_text(SMALL, encoding="utf-8")
    (root / "b.yaml").write_text(SMALL.replace("name: small test", "name: two devices more")
                                 .replace("slots: 2", "slots: 4"), encoding="utf-8")
    subprocess.run([sys.executable, "-m", "v2vsim", "compare", "a.yaml", "b.yaml", "-n", "5",
                    "--out", "cmp"], cwd=root, check=True, capture_output=True)
    return root / "cmp"


def _report(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "v2vsim", "report", *args], cwd=cwd, text=True,
                          capture_output=True, env={**os.environ, **(env or {})})


def test_a_pdf_report_is_printed_whole(chromium: str, compare_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    done = _report(str(compare_dir), "-o", str(tmp_path / "report.pdf"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    pdf = PdfReader(tmp_path / "report.pdf")
    box = pdf.pages[0].mediabox
    assert (round(float(box.width)), round(float(box.height))) == (595, 842)  # A4 in points
    assert 3 <= len(pdf.pages) <= 40
    pages = [unicodedata.normalize("NFKC", page.extract_text()) for page in pdf.pages]  # ligatures
    text = "\n".join(pages)
    for expected in ("Comparison table", "Key numbers", "Method", "small test", "two devices more"):
        assert expected in text, expected
    # The paired difference, the main result, is printed (not cut off at the page's edge).
    [table] = [page for page in pages if "2 Comparison table" in page]
    assert "Difference: two devices" in table and "more − baseline" in table
    assert table.count(" to ") > 30  # every row's intervals, the difference's among them
    assert [p.name for p in tmp_path.iterdir()] == ["report.pdf"]  # no temporary left


def test_pdf_beside_html(chromium: str, compare_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    done = _report(str(compare_dir), "-o", "out/r.html", "--pdf", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["r.html", "r.pdf"]
    assert (tmp_path / "out" / "r.pdf").read_bytes()[:5] == b"%PDF-"
    assert "r.html" in done.stdout and "r.pdf" in done.stdout


def test_no_browser_is_one_clear_line_and_nothing_written(compare_dir: Path, tmp_path: Path) -> None:
    env = {"V2VSIM_CHROMIUM": str(tmp_path / "no-such-browser")}
    for args in (["-o", "report.pdf"], ["-o", "report.html", "--pdf"]):
        done = _report(str(compare_dir), *args, cwd=tmp_path, env=env)
        assert done.returncode == 2
        assert done.stderr.strip().startswith("error: printing to PDF needs Chromium")
        assert "apt-get install chromium" in done.stderr and "Traceback" not in done.stderr
        assert list(tmp_path.iterdir()) == []
