"""Rules for single values of a scenario, the same for every key that holds such a value.

* A number is written as a number: YAML ``true``/``false`` and a quoted number (``'2'``) are
  refused wherever a number is expected (:func:`no_bool`), in a file and in ``--set`` alike.
* A name holds no control character (:data:`NAME_PATTERN`); free text may hold tabs and line
  breaks, nothing else (:data:`TEXT_PATTERN`). Both are regular expressions that pydantic and
  JSON Schema read alike, so the schema refuses what the loader refuses.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["NAME_PATTERN", "TEXT_PATTERN", "no_bool", "quoted_number"]

#: No C0 or C1 control character (tab and newline included) in a name: names are drawn in
#: figures (an SVG with one is not well-formed XML), printed in tables and used in paths.
NAME_PATTERN = r"^[^\u0000-\u001f\u007f-\u009f]*$"
#: Free text (a description) may hold tabs and line breaks, no other control character.
TEXT_PATTERN = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$"


#: A string that YAML would read as a number had it not been quoted ('2', "1825", '1e-3').
_QUOTED_NUMBER = re.compile(r"[+-]?(\d[\d_]*\.?[\d_]*|\.\d[\d_]*)([eE][+-]?\d+)?")


def quoted_number(value: Any) -> bool:
    """Whether ``value`` is a string holding a number (``'2'``): a quoted number."""
    return isinstance(value, str) and _QUOTED_NUMBER.fullmatch(value.strip()) is not None


def no_bool(value: Any) -> Any:
    """Refuse what is not written as a number where a number is expected: YAML ``true``/``false``
    (pydantic reads them as 1/0) and quoted numbers (pydantic's lax mode reads ``'2'`` as 2).
    One rule for every number, in a file and in ``--set`` alike."""
    if isinstance(value, bool):
        raise ValueError(f"must be a number, not {str(value).lower()}")
    if quoted_number(value):
        raise ValueError(f"must be a number: write {value.strip()} without quotes")
    return value  # any other string: pydantic says it is not a valid number
