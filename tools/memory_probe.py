"""Measure how much a gateway worker's peak RSS grows to accept and to serve one large edXML document.

Requirement: a 50 MB document must pass through the gateway with peak memory under 4x its size
per request in flight. This starts ``edxml-gateway serve --demo --production --workers 1`` on a
temporary data dir, warms the worker up with a small send, then streams one ``--mb`` document in
(``sendDocument``, base64 written from the file on the fly) and back out (``getDocument`` read in
64 KiB pieces and only hashed), resetting the kernel's peak-RSS counter (``VmHWM``) between the
two so each phase has its own figure. The client never holds the document, so the figures are
the gateway's.

    .venv/bin/python tools/memory_probe.py [--mb 50]

Exit status 1 if either ratio reaches 4.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "reliability"))

from reliability_support import (  # the helpers live with the reliability tests
    MEMORY_BUDGET,
    GatewayProcess,
    measure_send_and_fetch,
    write_big_document,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=50.0, help="document size in MB (default 50)")
    args = parser.parse_args()
    size = int(args.mb * 1_000_000)
    with tempfile.TemporaryDirectory() as tmp:
        document = Path(tmp) / "big.edxml"
        write_big_document(document, size)
        limit = str(max(64 << 20, size * 2))
        gateway = GatewayProcess(Path(tmp) / "var", workers=1, env={"GATEWAY_MAX_DOCUMENT_BYTES": limit})
        gateway.start()
        try:
            figures = measure_send_and_fetch(gateway, document)
        finally:
            gateway.stop()
    print(figures.report())
    return 0 if max(figures.send_ratio, figures.fetch_ratio) < MEMORY_BUDGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
