"""Measure the peak memory ``read_document`` adds when reading a large edXML document.

Budget (gateway requirement): a whole request on a 50 MB document must peak under 4x the document
size, so reading alone may add at most about 2x. This script writes a document of about ``--mb``
megabytes (one random attachment) with ``write_document`` into a temporary directory, then reads
it in a fresh subprocess, so the numbers are not polluted by the writer, and prints the growth of
peak RSS (``ru_maxrss``) over the baseline after imports and schema compilation.

    .venv/bin/python tools/bench_edxml_memory.py [--mb 50]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

from gateway.edxml import AttachmentSource, DocumentMessage, Organization, write_document

CHILD = """
import json, resource, sys
from pathlib import Path
from gateway.edxml import read_document
from gateway.edxml.validation import _validator
_validator("document")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
doc = read_document(Path(sys.argv[1]))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"baseline_kib": before, "peak_kib": after, "attachment_size": doc.attachments[0].size}))
"""


def build(path: Path, megabytes: float) -> int:
    """Write a document whose attachment makes the file about ``megabytes`` MB; return the raw size."""
    raw_size = int(megabytes * 1_000_000 * 3 / 4)
    attachment = path.with_suffix(".bin")
    with attachment.open("wb") as out:
        remaining = raw_size
        while remaining:
            step = min(remaining, 1 << 20)
            out.write(os.urandom(step))
            remaining -= step
    msg = DocumentMessage(
        sender=Organization("000.00.00.G22", "Văn phòng Chính phủ"),
        recipients=(Organization("000.00.00.H41", "Ủy ban nhân dân tỉnh Nghệ An"),),
        code_number="7816",
        code_notation="VPCP-TTĐT",
        promulgation_date=date(2016, 4, 1),
        type_code=1,
        type_name="Công văn",
        subject="Kiểm tra bộ nhớ khi đọc văn bản lớn",
    )
    with path.open("wb") as out:
        write_document(msg, [AttachmentSource("lon.pdf", "application/pdf", path=attachment)], out)
    attachment.unlink()
    return raw_size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=50.0, help="approximate document size in MB (default 50)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.edxml"
        raw_size = build(path, args.mb)
        file_size = path.stat().st_size
        result = subprocess.run([sys.executable, "-c", CHILD, str(path)], check=True, capture_output=True, text=True)
    numbers = json.loads(result.stdout)
    if numbers["attachment_size"] != raw_size:
        print(f"attachment size mismatch: read {numbers['attachment_size']}, wrote {raw_size}")
        return 1
    growth = (numbers["peak_kib"] - numbers["baseline_kib"]) * 1024
    ratio = growth / file_size
    print(f"document size        {file_size / 1e6:8.1f} MB")
    print(f"baseline RSS         {numbers['baseline_kib'] / 1024:8.1f} MiB (after imports and schema load)")
    print(f"peak RSS growth      {growth / 1e6:8.1f} MB")
    print(f"growth / file size   {ratio:8.3f}x (budget 2x)")
    print(f"writer process peak  {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:8.1f} MiB")
    return 0 if ratio <= 2 else 1


if __name__ == "__main__":
    raise SystemExit(main())
