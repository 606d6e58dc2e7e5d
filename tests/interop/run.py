#!/usr/bin/env python3
"""Run every SOAP stack's interop client, the whole exchange story, against a running gateway.

Starts nothing: point it at a gateway that is already serving, e.g. one started with
``GATEWAY_DATA_DIR=/tmp/gw edxml-gateway serve --demo --port 8080``:

    python tests/interop/run.py --wsdl http://127.0.0.1:8080/soap?wsdl \\
        --credentials /tmp/gw/demo-credentials.json --document letter.edxml

The document must come from one agency (the sender, e.g. VPCP) to exactly two others: the
first ``To`` takes it to 06 (completed), the second rejects it (02). Write one with
``make_document.py``. Each stack sends its own copy with the DocumentId made unique
(``<DocumentId>#<stack>-<time>``), since resending a DocumentId only returns the first
receipt; the copy must therefore be unsigned.

Each stack lives in tests/interop/<stack>/ with a ``run.sh WSDL_URL BUILD_DIR`` that generates
stubs from the WSDL, builds and runs the client (agencies and document from INTEROP_*
variables, see lib.sh).  Its exit code is the verdict: 0 pass, 77 skip (stack not installed:
see install.sh), anything else fail.  The driver prints one line per stack and closes with
"interop: N passed, N failed, N skipped"; it exits 1 when a stack failed (or, with --strict,
when one was skipped).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Order: the cheap runtime-WSDL stacks first, compiled ones after.
STACKS = ["zeep", "suds", "php", "node", "mono", "gsoap", "java", "axis1"]
SKIP = 77
SHOWN = ("fault ", "story passed", "NOTE", "SKIP")  # lines kept from a passing stack's output


def load_secrets(path: Path) -> dict[str, str]:
    """Agency code -> secret from ``serve --demo``'s demo-credentials.json (a list of
    ``{"agency", "name", "secret"}``); ``{"agencies": [{"code", "secret"}]}`` and a plain
    ``{code: secret}`` object are accepted too."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict) and "agencies" in data:
        data = data["agencies"]
    if isinstance(data, dict):
        return {str(k): str(v) for k, v in data.items()}
    return {str(a.get("agency") or a["code"]): str(a["secret"]) for a in data}


def parties(edxml: bytes) -> tuple[str, list[str]]:
    """(From/OrganId, [To/OrganId, ...]) of the document's MessageHeader."""
    root = ET.fromstring(edxml)
    header = next(e for e in root.iter() if e.tag.endswith("}MessageHeader") or e.tag == "MessageHeader")

    def organ(e: ET.Element) -> str:
        return next(c.text or "" for c in e if c.tag.rpartition("}")[2] == "OrganId").strip()

    kids = [(c.tag.rpartition("}")[2], c) for c in header]
    return next(organ(c) for t, c in kids if t == "From"), [organ(c) for t, c in kids if t == "To"]


def fresh_copy(edxml: bytes, tag: str) -> bytes:
    """The document with its (first, MessageHeader) DocumentId made unique by appending ``#tag``."""
    new, count = re.subn(
        rb"(<(?:[\w.-]+:)?DocumentId>)([^<]*)(<)", lambda m: m[1] + m[2] + b"#" + tag.encode() + m[3], edxml, count=1
    )
    if count != 1:
        raise ValueError("no DocumentId element in the document")
    return new


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wsdl", required=True, help="URL (or path) of the gateway WSDL")
    ap.add_argument("--credentials", required=True, type=Path, help="JSON with the agencies' secrets")
    ap.add_argument("--document", required=True, type=Path, help="edXML file from the sender to two recipients")
    ap.add_argument("--stacks", default=",".join(STACKS), help="comma-separated subset (default: %(default)s)")
    ap.add_argument("--build-dir", type=Path, default=HERE / ".build", help="where stubs and binaries go")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per stack (default: %(default)s)")
    ap.add_argument("--strict", action="store_true", help="count a skipped (not installed) stack as a failure")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every stack's full output")
    args = ap.parse_args(argv)

    stacks = [s.strip() for s in re.split(r"[,\s]+", args.stacks) if s.strip()]
    unknown = [s for s in stacks if not (HERE / s / "run.sh").is_file()]
    if unknown:
        ap.error(f"unknown stack(s): {', '.join(unknown)}; known: {', '.join(STACKS)}")

    edxml = args.document.read_bytes()
    secrets = load_secrets(args.credentials)
    sender, recipients = parties(edxml)
    if len(recipients) != 2:
        ap.error(f"{args.document}: needs exactly two To agencies (one completes, one rejects), has {recipients}")
    roles = {"SENDER": sender, "HANDLER": recipients[0], "REJECTER": recipients[1]}
    missing = [code for code in roles.values() if code not in secrets]
    if missing:
        ap.error(f"{args.credentials}: no secret for {', '.join(missing)}")
    agency_env = {}
    for role, code in roles.items():
        agency_env[f"INTEROP_{role}_CODE"], agency_env[f"INTEROP_{role}_SECRET"] = code, secrets[code]

    wsdl = args.wsdl
    if "://" not in wsdl:  # a local file: give every tool an absolute file:// URL
        wsdl = Path(wsdl).resolve().as_uri()
    try:
        # INTEROP_CA_FILE: the CA of an https proxy in front of the gateway (tests/deploy/test_nginx.py).
        tls = ssl.create_default_context(cafile=os.environ.get("INTEROP_CA_FILE") or None)
        with urllib.request.urlopen(wsdl, timeout=30, context=tls if wsdl.startswith("https:") else None) as resp:
            head = resp.read(4096)
        if b"definitions" not in head:
            print(f"interop: {wsdl} does not look like a WSDL", file=sys.stderr)
            return 2
    except OSError as exc:
        print(f"interop: cannot fetch {wsdl}: {exc} (run.py starts no server)", file=sys.stderr)
        return 2

    results: dict[str, str] = {}
    for stack in stacks:
        build = (args.build_dir / stack).resolve()
        shutil.rmtree(build, ignore_errors=True)
        build.mkdir(parents=True)
        document = build / "document.edxml"
        document.write_bytes(fresh_copy(edxml, f"{stack}-{time.time_ns()}"))
        log = build / "output.log"
        t0 = time.monotonic()
        try:
            proc = subprocess.run(
                ["bash", str(HERE / stack / "run.sh"), wsdl, str(build)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                timeout=args.timeout,
                env={**os.environ, "LC_ALL": "C.UTF-8", "INTEROP_DOCUMENT": str(document), **agency_env},
            )
            rc, out = proc.returncode, proc.stdout
        except subprocess.TimeoutExpired as exc:
            rc = -1
            out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            out += f"\nTIMEOUT after {args.timeout:.0f}s\n"
        log.write_text(out, encoding="utf-8")
        took = time.monotonic() - t0
        verdict = "PASS" if rc == 0 else "SKIP" if rc == SKIP else "FAIL"
        results[stack] = verdict
        print(f"interop: {stack:6} {verdict} ({took:.1f}s, rc={rc}, log {log})", flush=True)
        lines = out.rstrip().splitlines()
        if not (args.verbose or verdict == "FAIL"):
            lines = [line for line in lines if line.startswith(SHOWN)]
        for line in lines[-60:]:
            print(f"    {line}", flush=True)

    passed = sum(v == "PASS" for v in results.values())
    failed = sum(v == "FAIL" for v in results.values())
    skipped = sum(v == "SKIP" for v in results.values())
    print(f"interop: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed or (args.strict and skipped) else 0


if __name__ == "__main__":
    sys.exit(main())
