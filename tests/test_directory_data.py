"""Checks on the shipped starting directory gateway/data/agencies.csv.

Reads the CSV with the csv module only; no gateway imports.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

CSV_PATH = Path(__file__).resolve().parent.parent / "gateway" / "data" / "agencies.csv"
HEADER = ["code", "name", "level", "parent_code", "test_code", "note"]
LENIENT_CODE = re.compile(r"^[0-9A-Z]{2,3}(\.[0-9A-Z]{2,3}){2,3}$")
# QCVN 102 form V1V2V3.Z1Z2.Y1Y2.X (X = letter + 2 digits, the level-1 unit).
QCVN_CODE = re.compile(r"^(\d{3})\.(\d{2})\.(\d{2})\.([A-Z]\d{2})$")
PROVINCE_CODE = re.compile(r"^000\.00\.00\.H\d{2}$")


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    with CSV_PATH.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == HEADER
        data = list(reader)
    assert data, "agencies.csv has no rows"
    return data


def by_code(rows: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    return {r["code"]: r for r in rows}


def test_file_is_utf8_without_bom() -> None:
    raw = CSV_PATH.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")
    raw.decode("utf-8")


def test_every_row_has_all_columns(rows: list[dict[str, str]]) -> None:
    for r in rows:
        assert None not in r, f"extra fields in row {r}"
        assert all(r[k] is not None for k in HEADER), f"missing fields in row {r}"
        assert r["code"].strip() == r["code"] and r["code"]
        assert r["name"].strip() == r["name"] and r["name"]


def test_codes_unique(rows: list[dict[str, str]]) -> None:
    codes = [r["code"] for r in rows]
    dupes = sorted({c for c in codes if codes.count(c) > 1})
    assert not dupes, f"duplicate codes: {dupes}"


def test_codes_match_lenient_pattern(rows: list[dict[str, str]]) -> None:
    bad = [r["code"] for r in rows if not LENIENT_CODE.match(r["code"])]
    assert not bad, f"codes with a bad shape: {bad}"


def test_exactly_one_government_office(rows: list[dict[str, str]]) -> None:
    vpcp = [r for r in rows if r["code"].endswith(".G22")]
    assert [r["code"] for r in vpcp] == ["000.00.00.G22"]
    assert vpcp[0]["name"] == "Văn phòng Chính phủ"
    assert vpcp[0]["level"] == "1"


def test_exactly_63_level1_provinces(rows: list[dict[str, str]]) -> None:
    provinces = [r for r in rows if r["level"] == "1" and PROVINCE_CODE.match(r["code"])]
    assert len(provinces) == 63
    assert len({r["name"] for r in provinces}) == 63
    for r in provinces:
        assert r["name"].startswith("Ủy ban nhân dân "), r


def test_known_codes_from_spec(rows: list[dict[str, str]]) -> None:
    idx = by_code(rows)
    assert "Nghệ An" in idx["000.00.00.H41"]["name"]
    assert "Cao Bằng" in idx["000.00.00.H14"]["name"]
    assert "Hậu Giang" in idx["000.00.00.H30"]["name"]


def test_levels_are_1_to_4(rows: list[dict[str, str]]) -> None:
    for r in rows:
        assert r["level"] in {"1", "2", "3", "4"}, r


def test_level1_rows_have_no_parent(rows: list[dict[str, str]]) -> None:
    for r in rows:
        if r["level"] == "1":
            assert r["parent_code"] == "", r
        else:
            assert r["parent_code"] != "", r


def test_every_parent_exists(rows: list[dict[str, str]]) -> None:
    idx = by_code(rows)
    missing = [r["code"] for r in rows if r["parent_code"] and r["parent_code"] not in idx]
    assert not missing, f"rows whose parent_code is unknown: {missing}"


def test_child_level_greater_than_parent(rows: list[dict[str, str]]) -> None:
    idx = by_code(rows)
    for r in rows:
        if r["parent_code"]:
            parent = idx[r["parent_code"]]
            assert int(r["level"]) > int(parent["level"]), (r, parent)


def test_no_parent_cycles(rows: list[dict[str, str]]) -> None:
    idx = by_code(rows)
    for r in rows:
        seen = set()
        cur = r
        while cur["parent_code"]:
            assert cur["code"] not in seen, f"cycle through {cur['code']}"
            seen.add(cur["code"])
            cur = idx[cur["parent_code"]]


def test_qcvn_codes_follow_level_rule(rows: list[dict[str, str]]) -> None:
    """Spec §5: the right-most group is the level-1 unit; each lower level fills the
    next group to the left; a child keeps its parent's right groups."""
    idx = by_code(rows)
    for r in rows:
        m = QCVN_CODE.match(r["code"])
        if not m:
            continue
        l4, l3, l2, _l1 = m.groups()
        expected = 1 + (l2 != "00") + (l3 != "00") + (l4 != "000")
        assert int(r["level"]) == expected, r
        # no gaps: a lower group is set only if the higher one is
        assert not (l3 != "00" and l2 == "00"), r
        assert not (l4 != "000" and l3 == "00"), r
        if r["parent_code"]:
            parent = idx[r["parent_code"]]
            depth = int(parent["level"])
            groups = r["code"].split(".")
            pgroups = parent["code"].split(".")
            assert groups[-depth:] == pgroups[-depth:], (r, parent)
            assert int(r["level"]) == depth + 1, (r, parent)


def test_test_code_flag(rows: list[dict[str, str]]) -> None:
    for r in rows:
        assert r["test_code"] in {"0", "1"}, r
        if r["test_code"] == "1":
            assert r["note"].strip(), f"test_code=1 row without a note: {r['code']}"
            assert "not verified" in r["note"], r


def test_names_keep_vietnamese_diacritics(rows: list[dict[str, str]]) -> None:
    names = {r["name"] for r in rows}
    assert "Bộ Quốc phòng" in names
    assert "Ủy ban nhân dân tỉnh Đắk Lắk" in names
    assert "Ủy ban nhân dân Thành phố Hồ Chí Minh" in names
