#!/usr/bin/env python3
"""Write a fresh edXML test letter from VPCP to Nghệ An and Cao Bằng (the gateway's own writer).

    .venv/bin/python tests/interop/make_document.py OUT.edxml [--number N]

Each call uses a new number, so a new DocumentId: resending the same sender+DocumentId is
idempotent (the gateway answers with the first receipt), so every interop run needs its own.
"""

from __future__ import annotations

import argparse
import time
from datetime import date
from pathlib import Path

from gateway.edxml import AttachmentSource, DocumentMessage, Organization, document_bytes

VPCP, NGHE_AN, CAO_BANG = "000.00.00.G22", "000.00.00.H41", "000.00.00.H14"
NAMES = {
    VPCP: "Văn phòng Chính phủ",
    NGHE_AN: "Ủy ban nhân dân tỉnh Nghệ An",
    CAO_BANG: "Ủy ban nhân dân tỉnh Cao Bằng",
}


def letter(number: str | None = None, sender: str = VPCP, recipients: tuple[str, ...] = (NGHE_AN, CAO_BANG)) -> bytes:
    number = number or str(time.time_ns())
    message = DocumentMessage(
        sender=Organization(sender, NAMES.get(sender, sender)),
        recipients=tuple(Organization(code, NAMES.get(code, code)) for code in recipients),
        code_number=number,
        code_notation="VPCP-TTĐT",
        promulgation_date=date(2026, 11, 20),
        type_code=1,
        type_name="Công văn",
        subject="Về việc kiểm thử liên thông (interop)",
        document_id=f"{sender},2026/11/20,{number}/VPCP-TTĐT",
        due_date=date(2026, 12, 31),
        priority=1,
    )
    pdf = AttachmentSource(name="cong-van.pdf", content_type="application/pdf", data=b"%PDF-1.4 interop letter\n")
    return document_bytes(message, [pdf])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--number", help="CodeNumber (default: a new one from the clock)")
    args = ap.parse_args()
    args.out.write_bytes(letter(args.number))
    print(args.out)


if __name__ == "__main__":
    main()
