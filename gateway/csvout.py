"""Every CSV the gateway writes goes through here, so that no cell can run as a spreadsheet formula.

Agency names, codes and notes come from agencies' imports and the operator's typing. A text cell
beginning with ``=``, ``+``, ``-`` or ``@`` is evaluated as a formula by Excel, LibreOffice and
Google Sheets (``=HYPERLINK(...)`` leaks data, ``+cmd|' /C calc'!A0`` runs DDE); a leading tab
or carriage return hides such a cell from a quick look while some importers still evaluate it.
Such cells get a single quote in front (the OWASP "CSV injection" advice): spreadsheets show the
text as typed, and the quote makes the cell plain text. Numbers are written as numbers.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any, TextIO

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    """``value`` with a quote in front if it is text a spreadsheet would read as a formula; else unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


class SafeWriter:
    """A ``csv.writer`` that neutralises every text cell it writes.

    Lines end in CRLF as RFC 4180 says, which also makes the writer quote any cell holding a CR or
    an LF: with ``\\n`` line ends a bare CR went out unquoted, and a reader splitting on it would
    see a new row whose first cell nobody neutralised.
    """

    def __init__(self, out: TextIO) -> None:
        self._writer = csv.writer(out, lineterminator="\r\n")

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow([neutralise(cell) for cell in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def writer(out: TextIO) -> SafeWriter:
    """The CSV writer to use for anything the gateway exports."""
    return SafeWriter(out)
