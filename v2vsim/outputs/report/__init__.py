"""One self-contained HTML report of results directories, for a funding-proposal appendix.

``write_report([DIR, ...], "report.html")`` reads run directories (``v2vsim run``) and comparison
directories (``v2vsim compare``) and writes a single HTML file: key numbers with 95% confidence
intervals (paired differences for comparisons), a results table, the figures (embedded as
base64 PNG downscaled to 1,800 pixels wide in a 256-colour palette, or SVG when there is no PNG)
with captions, an assumptions table pairing every
scenario parameter with the comment written next to it in the scenario file, a method
section in the order of the STRESS-DES reporting checklist (Monks et al. 2019), and a
validation section by the ISPOR–SMDM validity types (Eddy et al. 2012), with the external
validation of a ``v2vsim validation`` directory when one is given (``validation=``).

The page needs no network and no JavaScript: CSS is inline, images are ``data:`` URIs, and a
Content-Security-Policy forbids scripts and remote loads. Everything users wrote (scenario
names, descriptions, comments, cohort, site and step names) is HTML-escaped by the template
engine (Jinja2 with autoescaping on), never pasted into markup.

This package reads results; it never imports the model. Its modules, in the order the data
flows: :mod:`.load` (results directories), :mod:`.sources` (parameters and their source
comments), :mod:`.table` (the comparison table and number formats), :mod:`.describe` (the
scenario in words), :mod:`.scope` (assumptions and limitations read from each scenario),
:mod:`.run_warnings` (the run's warnings), :mod:`.summary` (the executive summary),
:mod:`.captions` (figure captions), :mod:`.validity` (the validation section),
:mod:`.economics`, :mod:`.experiment` (sweep, sensitivity, capacity and PSA directories),
:mod:`.context` (everything the page shows, as plain data), :mod:`.render` (the templates and
the written file) and :mod:`.pdf` (printing with Chromium).
"""

from .context import KEY_METRICS
from .load import CompareDir, ReportError, RunDir, ValidationDir, load_results, load_validation
from .pdf import PDFError
from .render import render_report, write_report
from .sources import Parameter, source_parameters
from .table import paired_comparison

__all__ = [
    "ReportError",
    "PDFError",
    "RunDir",
    "CompareDir",
    "ValidationDir",
    "Parameter",
    "load_results",
    "load_validation",
    "source_parameters",
    "paired_comparison",
    "render_report",
    "write_report",
    "KEY_METRICS",
]
