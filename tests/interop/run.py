#!/usr/bin/env python3
"""Run every SOAP stack's interop client against a running gateway.

Starts nothing: point it at a gateway that is already serving, e.g.

    python tests/interop/run.py --wsdl http://127.0.0.1:8000/soap/?wsdl

Each stack lives in tests/interop/<stack>/ with a ``run.sh WSDL_URL BUILD_DIR``
that generates stubs from the WSDL, builds and runs the client.  Its exit code
is the verdict: 0 pass, 77 skip (stack not installed: see install.sh), anything
else fail.  The driver prints one line per stack and closes with
"N passed, N failed, N skipped"; it exits 1 when a stack failed (or, with
--strict, when one was skipped).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Order: the cheap runtime-WSDL stacks first, compiled ones after.
STACKS = ["zeep", "suds", "php", "node", "mono", "gsoap", "java", "axis1"]
SKIP = 77


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wsdl", required=True, help="URL (or path) of the gateway WSDL")
    ap.add_argument("--stacks", default=",".join(STACKS), help="comma-separated subset (default: %(default)s)")
    ap.add_argument("--build-dir", type=Path, default=HERE / ".build", help="where stubs and binaries go")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per stack (default: %(default)s)")
    ap.add_argument("--strict", action="store_true", help="count a skipped (not installed) stack as a failure")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every stack's full output")
    args = ap.parse_args(argv)

    stacks = [s.strip() for s in args.stacks.split(",") if s.strip()]
    unknown = [s for s in stacks if not (HERE / s / "run.sh").is_file()]
    if unknown:
        ap.error(f"unknown stack(s): {', '.join(unknown)}; known: {', '.join(STACKS)}")

    wsdl = args.wsdl
    if "://" not in wsdl:  # a local file: give every tool an absolute file:// URL
        wsdl = Path(wsdl).resolve().as_uri()
    try:
        with urllib.request.urlopen(wsdl, timeout=15) as resp:
            head = resp.read(4096)
        if b"definitions" not in head:
            print(f"interop: {wsdl} does not look like a WSDL", file=sys.stderr)
            return 2
    except OSError as exc:
        print(f"interop: cannot fetch {wsdl}: {exc} (run.py starts no server)", file=sys.stderr)
        return 2

    results: dict[str, str] = {}
    for stack in stacks:
        build = args.build_dir / stack
        shutil.rmtree(build, ignore_errors=True)
        build.mkdir(parents=True)
        log = build / "output.log"
        t0 = time.monotonic()
        try:
            proc = subprocess.run(
                ["bash", str(HERE / stack / "run.sh"), wsdl, str(build)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=args.timeout,
                env={**os.environ, "LC_ALL": "C.UTF-8"},
            )
            rc, out = proc.returncode, proc.stdout
        except subprocess.TimeoutExpired as exc:
            rc = -1
            out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            out += f"\nTIMEOUT after {args.timeout:.0f}s\n"
        log.write_text(out)
        took = time.monotonic() - t0
        verdict = "PASS" if rc == 0 else "SKIP" if rc == SKIP else "FAIL"
        results[stack] = verdict
        print(f"interop: {stack:6} {verdict} ({took:.1f}s, rc={rc}, log {log})")
        keep = ("ok ", "fault ", "typed fault", "NOTE", "SKIP")
        shown = (
            out
            if args.verbose or verdict == "FAIL"
            else "".join(line for line in out.splitlines(keepends=True) if line.startswith(keep))
        )
        for line in shown.rstrip().splitlines()[-40:]:
            print(f"    {line}")

    passed = sum(v == "PASS" for v in results.values())
    failed = sum(v == "FAIL" for v in results.values())
    skipped = sum(v == "SKIP" for v in results.values())
    print(f"interop: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed or (args.strict and skipped) else 0


if __name__ == "__main__":
    sys.exit(main())
