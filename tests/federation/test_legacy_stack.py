"""A legacy SOAP stack (PHP ext-soap, as in tests/interop/php) runs the exchange story across provinces.

The sender is a commune of province A talking to gateway A, the recipient a department of
province B talking to gateway B; neither program knows tiers exist (same agency WSDL). The client,
php/federated_client.php, makes the calls of tests/interop/php/client.php and waits for what
crosses the network instead of expecting it at once.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from harness import A_COMMUNE, B_DEPARTMENT, Network
from support.letters import official_letter

pytestmark = pytest.mark.interop

CLIENT = Path(__file__).resolve().parent / "php" / "federated_client.php"


def _php_soap_missing() -> str | None:
    php = shutil.which("php")
    if php is None:
        return "php is not installed (run tests/interop/install.sh)"
    probe = subprocess.run([php, "-r", 'exit(class_exists("SoapClient") ? 0 : 1);'], capture_output=True)
    return None if probe.returncode == 0 else "php-soap (SoapClient) is not installed"


def test_php_soapclient_story_from_province_a_to_province_b(network: Network, tmp_path: Path) -> None:
    reason = _php_soap_missing()
    if reason:
        pytest.skip(reason)
    document = tmp_path / "letter.edxml"
    document.write_bytes(official_letter(A_COMMUNE, [B_DEPARTMENT], number="3636"))
    sender_home, handler_home = network.home_of(A_COMMUNE), network.home_of(B_DEPARTMENT)
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LC_ALL": "C.UTF-8",
        "INTEROP_SENDER_CODE": A_COMMUNE,
        "INTEROP_SENDER_SECRET": sender_home.secrets[A_COMMUNE],
        "INTEROP_HANDLER_CODE": B_DEPARTMENT,
        "INTEROP_HANDLER_SECRET": handler_home.secrets[B_DEPARTMENT],
    }
    proc = subprocess.run(
        [
            str(shutil.which("php")),
            "-d",
            "soap.wsdl_cache_enabled=0",
            str(CLIENT),
            f"{sender_home.soap_url}?wsdl",
            f"{handler_home.soap_url}?wsdl",
            str(document),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        timeout=240,
        env=env,
    )
    if proc.returncode != 0 or "story passed" not in proc.stdout:
        pytest.fail(f"PHP story failed (rc={proc.returncode}):\n{proc.stdout}", pytrace=False)
