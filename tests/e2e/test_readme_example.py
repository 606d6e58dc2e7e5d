"""The README's "Send a first document with zeep" example runs as written against a live gateway."""

from __future__ import annotations

import json
import re

import pytest
from support.live import DIRECTORY, secret_of

from gateway.config import REPO_ROOT

README_URL = "http://127.0.0.1:8080/soap?wsdl"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_readme_zeep_example(live_gateway, tmp_path, monkeypatch, capsys) -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    example = re.search(r"## Send a first document with zeep.*?```python\n(.*?)```", readme, re.S)
    assert example is not None, "README lost its zeep example"
    code = example.group(1)
    assert README_URL in code
    workdir = tmp_path / "agency-desk"
    (workdir / "var").mkdir(parents=True)
    credentials = [{"agency": c, "name": n, "secret": secret_of(c)} for c, n, *_ in DIRECTORY]
    (workdir / "var" / "demo-credentials.json").write_text(json.dumps(credentials), encoding="utf-8")
    monkeypatch.chdir(workdir)
    exec(compile(code.replace(README_URL, live_gateway.wsdl), "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "'statusCode': '01'" in printed and "'statusCode': '03'" in printed
