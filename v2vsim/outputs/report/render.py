"""The report's HTML: the template (``report.html.j2``, beside this module) rendered with
autoescaping, and the file written atomically."""

from __future__ import annotations

import os
import shlex
import tempfile
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from jinja2 import Environment, FunctionLoader, StrictUndefined

from .context import _data_uri, _integrity, build_context
from .experiment import experiment_context
from .pdf import find_browser, html_to_pdf
from .load import CompareDir, ExperimentDir, ReportError, RunDir, ValidationDir, load_results, load_validation

__all__ = ["render_report", "write_report"]


class _Environment(Environment):
    """Jinja with ``d.key`` meaning the dict's item even when dicts have a method of that name
    (``d.values``, ``d.clear``), and every value HTML-escaped."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


def _source(name: str) -> str:
    return resources.files("v2vsim.outputs.report").joinpath(name).read_text(encoding="utf-8")


def _template() -> Environment:
    return _Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True,
                        lstrip_blocks=True, keep_trailing_newline=True, loader=FunctionLoader(_source))


#: Paper sizes of the print layout (``@page size``): ISO A4 and US Letter.
PAPERS = {"a4": "A4", "letter": "letter"}


def render_report(inputs: Sequence[RunDir | CompareDir | ExperimentDir], report_command: str = "",
                  validation: ValidationDir | None = None, paper: str = "a4") -> str:
    """The report's HTML text for loaded results directories (and a validation directory),
    laid out for printing on ``paper`` (:data:`PAPERS`)."""
    if paper not in PAPERS:
        raise ReportError(f"unknown paper size {paper!r}; use one of {', '.join(PAPERS)}")
    if not inputs:
        raise ReportError("no results directory given")
    experiments = [i for i in inputs if isinstance(i, ExperimentDir)]
    if experiments:
        if len(inputs) > 1 or validation is not None:
            raise ReportError(f"{experiments[0].path}: a {experiments[0].kind} directory is reported on "
                              "its own (without other directories or --validation)")
        exp = experiments[0]
        check = _integrity(exp.path, exp.manifest)
        return _template().get_template("experiment.html.j2").render(
            **experiment_context(exp, report_command, _data_uri, check), page_size=PAPERS[paper])
    template = _template().get_template("report.html.j2")
    return template.render(**build_context(inputs, report_command, validation),
                           page_size=PAPERS[paper])


def write_report(directories: Sequence[str | Path], output: str | Path = "report.html",
                 validation: str | Path | None = None, pdf: bool = False,
                 paper: str = "a4") -> Path:
    """Write the report of ``directories`` (run or comparison directories) to ``output``.

    ``validation`` is a validation results directory (``v2vsim validation``) for the report's
    external-validity section. Raises :class:`ReportError` (nothing is written) for a directory
    that is not what it is given as. An ``output`` ending in ``.pdf`` is printed to PDF by
    headless Chromium (:mod:`.pdf`); ``pdf=True`` writes the PDF beside the HTML (same name,
    ``.pdf``); ``paper`` is the page size of the print layout (``a4`` or ``letter``). Each file
    is written atomically. Returns ``output``.
    """
    output = Path(output)
    if paper not in PAPERS:
        raise ReportError(f"unknown paper size {paper!r}; use one of {', '.join(PAPERS)}")
    if output.is_dir():
        raise ReportError(f"{output} is a directory; give the HTML file to write with -o")
    as_pdf = output.suffix.lower() == ".pdf"
    if as_pdf or pdf:
        find_browser()  # before any work, so that a missing browser is the only message
    inputs = [load_results(d) for d in directories]
    checked = load_validation(validation) if validation is not None else None
    command = shlex.join(["v2vsim", "report", *[str(d) for d in directories],
                          *(["--validation", str(validation)] if validation is not None else []),
                          "-o", str(output), *(["--pdf"] if pdf and not as_pdf else []),
                          *(["--paper", paper] if paper != "a4" else [])])
    html = render_report(inputs, command, checked, paper)
    if as_pdf:
        with tempfile.TemporaryDirectory(prefix="v2vsim-report-") as tmpdir:
            page = _write_html(html, Path(tmpdir) / "report.html")
            return html_to_pdf(page, output)
    _write_html(html, output)
    if pdf:
        html_to_pdf(output, output.with_suffix(".pdf"))
    return output


def _write_html(html: str, output: Path) -> Path:
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(html)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; a report is for sharing
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return output
