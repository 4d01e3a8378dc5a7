"""The CSV input is read strictly and within bounds (issue 16): each problem is one sentence naming the line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from prefect_intercom.batch.csv_input import read_requests_csv, scan_csv


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "callers.csv"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("header", ["phone,issue,phone", "phone,issue, Phone ", "PHONE,phone"])
def test_two_phone_columns_are_refused_naming_the_header_line(tmp_path: Path, header: str) -> None:
    path = _write(tmp_path, f"{header}\n+14155550100,Billing,+14155550101\n")
    with pytest.raises(ValueError, match=r"line 1 \(the header\) has 2 columns named like 'phone'"):
        scan_csv(path, phone_column="phone")
    with pytest.raises(ValueError, match="ambiguous"):
        list(read_requests_csv(path))


def test_an_unclosed_quote_is_refused_naming_the_line_where_it_opens(tmp_path: Path) -> None:
    path = _write(tmp_path, 'phone,issue\n+14155550100,Billing\n+14155550101,"Support\n+14155550102,x\n+1415,y\n')
    with pytest.raises(ValueError, match=r"^line 3: a quoted field starts there and is never closed"):
        scan_csv(path, phone_column="phone")


def test_rows_are_numbered_as_the_file_has_them(tmp_path: Path) -> None:
    path = _write(tmp_path, "phone,issue\n\n\n\n+14155550100,Billing\n\n+14155550101,Support\n+14155550102,x\n")
    scan = scan_csv(path, phone_column="phone")
    assert scan.rows == 3
    assert [scan.row_numbers(index) for index in range(3)] == [5, 7, 8]
    assert [body["phone"] for body in read_requests_csv(path)] == ["+14155550100", "+14155550101", "+14155550102"]


@pytest.mark.parametrize(
    ("text", "sentence"),
    [
        ("phone\n" + "+1" * 40_000 + "\n", r"^line 2: a field is longer than 64 KiB$"),
        ('phone\n"' + "x" * 200_000 + "\n", r"^line 2: a quoted field starts there and is never closed"),
        ("phone\n" + "1," * 600_000 + "\n", r"^line 2 is longer than 1024 KiB"),
        ("phone\n+1415\x005550100\n", r"^line 2 holds a NUL byte"),
    ],
)
def test_reading_is_bounded(tmp_path: Path, text: str, sentence: str) -> None:
    with pytest.raises(ValueError, match=sentence):
        scan_csv(_write(tmp_path, text), phone_column="phone")


def test_a_file_that_never_ends_stops_at_the_line_limit() -> None:
    with pytest.raises(ValueError, match=r"^line 1 is longer than 1024 KiB"):
        scan_csv("/dev/zero", phone_column="phone")


@pytest.mark.parametrize(
    ("url", "protocol", "package"), [("s3://bucket/callers.csv", "s3", "s3fs"), ("gs://bucket/c.csv", "gs", "gcsfs")]
)
def test_a_url_without_its_filesystem_package_names_the_package(
    url: str, protocol: str, package: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The package is hidden whether or not it is installed: `None` in sys.modules makes its import fail.
    monkeypatch.setitem(sys.modules, package, None)
    monkeypatch.delitem(sys.modules["fsspec.registry"]._registry, protocol, raising=False)
    with pytest.raises(OSError, match=f"need the {package} package \\(pip install {package}\\)"):
        scan_csv(url)


def test_an_unreachable_url_says_why() -> None:
    with pytest.raises(OSError, match=r"http://127\.0\.0\.1:9/callers\.csv: .*(refused|failed)"):
        scan_csv("http://127.0.0.1:9/callers.csv")
