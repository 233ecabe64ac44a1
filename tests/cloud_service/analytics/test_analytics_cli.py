"""``analyze`` CLI, run through its entry point with argv: outputs and clean failures."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from cloud_service.analytics.cli import main


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, out, err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def series_csv(tmp_path: Path) -> Path:
    x = 50.0 + np.random.default_rng(0).normal(0, 1, 600)
    x[500] += 40
    lines = ["timestamp,value"] + [
        f"2026-01-01T00:00:00Z,{v}".replace("00:00:00", f"{i // 60:02d}:{i % 60:02d}:00")
        for i, v in enumerate(x)
    ]
    path = tmp_path / "in.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_anomalies_to_stdout_and_file(series_csv: Path, tmp_path: Path) -> None:
    code, out, _ = run(["analyze", "anomalies", str(series_csv)])
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 600
    assert list(rows[0]) == ["timestamp", "value", "score", "flag", "reason"]
    assert rows[500]["flag"] == "1"
    assert rows[500]["reason"] == "spike"
    assert {r["flag"] for r in rows} <= {"0", "1"}
    target = tmp_path / "out.csv"
    code, out, _ = run(["analyze", "anomalies", str(series_csv), "-o", str(target)])
    assert code == 0
    assert out == ""
    assert target.read_text().splitlines()[501].endswith(",1,spike")


def _stock_csv(tmp_path: Path) -> Path:
    lines = ["timestamp,stock"] + [f"{1_767_225_600 + h * 3600},{1000 - 3 * h}" for h in range(200)]
    path = tmp_path / "stock.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_depletion_json_and_csv(tmp_path: Path) -> None:
    path = _stock_csv(tmp_path)
    code, out, _ = run(
        ["analyze", "depletion", str(path), "--lead-time", "24", "--safety-stock", "60"]
    )
    assert code == 0
    rec = json.loads(out)
    for key in (
        "stockout_p10",
        "stockout_p50",
        "stockout_p90",
        "safety_stock_p50",
        "rate_per_hour",
        "demand_class",
        "reorder_by",
        "reorder_qty",
    ):
        assert key in rec
    assert rec["rate_per_hour"] == pytest.approx(3.0)
    # 403 left at 3/h from 2026-01-09T08:00Z: zero within hour 135 (134.3 h)
    assert rec["stockout_p50"] == "2026-01-14T23:00:00Z"
    assert rec["demand_class"] == "smooth"
    code, out, _ = run(["analyze", "depletion", str(path), "--lead-time", "24", "--format", "csv"])
    assert code == 0
    row = next(csv.DictReader(io.StringIO(out)))
    assert row["stockout_p50"] == rec["stockout_p50"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty"),
        ("timestamp,stock\n2026-01-02,5\n2026-01-01,4\n", "earlier"),
        ("timestamp,stock\n2026-01-01,five\n", "not a number"),
        ("timestamp,stock\n2026-01-01T00:00Z,5\n", "at least 3 periods"),
    ],
)
def test_bad_files_exit_2_with_one_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    code, out, err = run(["analyze", "depletion", str(path), "--lead-time", "5"])
    assert code == 2
    assert out == ""
    assert message in err
    assert "Traceback" not in err
    assert err.count("error:") == 1


def test_missing_file_and_bad_options(tmp_path: Path) -> None:
    code, _, err = run(["analyze", "anomalies", str(tmp_path / "nope.csv")])
    assert code == 2
    assert "no such file" in err
    path = _stock_csv(tmp_path)
    code, _, err = run(
        ["analyze", "depletion", str(path), "--lead-time", "5", "--service-level", "2"]
    )
    assert code == 2
    assert "service level" in err
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00bad")
    code, _, err = run(["analyze", "anomalies", str(tmp_path / "bin.csv")])
    assert code == 2
    assert "UTF-8" in err


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["anomalies", "--sensitivity", "inf"], "--sensitivity"),
        (["anomalies", "--sensitivity", "nan"], "--sensitivity"),
        (["depletion", "--lead-time", "inf"], "--lead-time"),
        (["depletion", "--lead-time", "1e308"], "--lead-time"),
        (["depletion", "--lead-time", "nan"], "--lead-time"),
        (["depletion", "--lead-time", "5", "--review-period", "nan"], "--review-period"),
        (["depletion", "--lead-time", "5", "--safety-stock", "inf"], "--safety-stock"),
        (["depletion", "--lead-time", "5", "--horizon", "0"], "--horizon"),
    ],
)
def test_options_out_of_range_are_one_clear_error(
    tmp_path: Path, command: list[str], message: str
) -> None:
    path = _stock_csv(tmp_path)
    if command[0] == "anomalies":
        path.write_text("timestamp,value\n2026-01-01T00:00:00Z,1\n2026-01-01T00:01:00Z,2\n")
    code, out, err = run(["analyze", command[0], str(path), *command[1:]])
    assert code == 2
    assert out == ""
    assert message in err
    assert "Traceback" not in err


def test_depletion_nets_a_production_counter(tmp_path: Path) -> None:
    # 60 an hour made from 06:00 to 14:00, 20 an hour used: from level drops alone the rate
    # looks like 20 only off-shift; netting the 16-bit counter (it rolls over) recovers it
    t0, n = 1_767_225_600, 24 * 21
    made = [60 if 6 <= h % 24 < 14 else 0 for h in range(n)]
    level, count, stock_rows, count_rows = 3000, 65_300, [], []
    for h in range(n):
        level += made[h] - 20
        count = (count + made[h]) % 65_536
        stock_rows.append(f"{t0 + h * 3600},{level}")
        count_rows.append(f"{t0 + h * 3600},{count}")
    stock = tmp_path / "stock.csv"
    stock.write_text("timestamp,stock\n" + "\n".join(stock_rows) + "\n")
    counts = tmp_path / "line.csv"
    counts.write_text("timestamp,count\n" + "\n".join(count_rows) + "\n")
    base = ["analyze", "depletion", str(stock), "--lead-time", "24"]
    code, out, _ = run(base)
    assert code == 0
    assert json.loads(out)["rate_per_hour"] < 15
    code, out, _ = run([*base, "--production", str(counts), "--counter-bits", "16"])
    assert code == 0
    rec = json.loads(out)
    assert rec["rate_per_hour"] == pytest.approx(20.0, rel=0.02)
    assert any("production netted in" in n for n in rec["notes"])
    code, _, err = run([*base, "--production", str(tmp_path / "missing.csv")])
    assert code == 2
    assert err.startswith("error:")
    counts.write_text("timestamp,count\n1767225600,abc\n")
    code, _, err = run([*base, "--production", str(counts)])
    assert code == 2
    assert "count" in err


# --- review fixes ----------------------------------------------------------------------------


def _write(tmp_path: Path, name: str, header: str, rows: list[str]) -> Path:
    path = tmp_path / name
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def _hourly(n: int, value: object, start: int = 1_767_225_600) -> list[str]:
    return [f"{start + h * 3600},{value}" for h in range(n)]


def test_no_demand_under_safety_stock_orders_now(tmp_path: Path) -> None:
    path = _write(tmp_path, "s.csv", "timestamp,stock", _hourly(200, 5))
    code, out, err = run(
        ["analyze", "depletion", str(path), "--lead-time", "72", "--safety-stock", "100",
         "--format", "csv"]
    )  # fmt: skip
    assert code == 0
    row = next(csv.DictReader(io.StringIO(out)))
    assert row["reorder_qty"] == "95.0"
    assert row["reorder_by"] != ""
    assert row["reorder_by"] < row["as_of"]
    assert "order now" in err


def test_reorder_by_is_empty_when_nothing_is_due_within_the_horizon(tmp_path: Path) -> None:
    rows = [f"{1_767_225_600 + h * 3600},{1000 - h // 24}" for h in range(24 * 30)]  # 1 a day
    path = _write(tmp_path, "slow.csv", "timestamp,stock", rows)
    dates = set()
    for horizon in ("2160", "500", "200"):
        code, out, _ = run(
            ["analyze", "depletion", str(path), "--lead-time", "72", "--safety-stock", "100",
             "--horizon", horizon]
        )  # fmt: skip
        assert code == 0
        rec = json.loads(out)
        assert rec["safety_stock_p10"] == ""
        dates.add(rec["reorder_by"])
        assert rec["reorder_qty"] == 0
    assert dates == {""}


@pytest.mark.parametrize(
    ("last_row", "message"),
    [
        (
            "1e18,1",
            "line 202: timestamp 1e18 is outside 1970-01-01..2262-04-11; it looks like epoch",
        ),
        ("2053-12-06T21:13:20Z,1", "line 202: timestamp 2053-12-06T21:13:20Z is 10,"),
        ("1767945600,1e300", "line 202: stock '1e300' is too large"),
    ],
)
def test_wild_rows_are_one_clear_error(tmp_path: Path, last_row: str, message: str) -> None:
    path = _write(tmp_path, "st.csv", "timestamp,stock", [*_hourly(200, 500), last_row])
    code, out, err = run(["analyze", "depletion", str(path), "--lead-time", "1"])
    assert code == 2
    assert out == ""
    assert err == f"error: {path}: {message}" + err.split(message, 1)[1]
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_errors_name_the_file_they_come_from(tmp_path: Path) -> None:
    stock = _write(tmp_path, "stock.csv", "timestamp,stock", _hourly(100, 500))
    counts = _write(tmp_path, "line.csv", "timestamp,count", ["", "1767225600,abc"])
    code, _, err = run(
        ["analyze", "depletion", str(stock), "--lead-time", "5", "--production", str(counts)]
    )
    assert code == 2
    assert err.startswith(f"error: {counts}: line 3: count 'abc' is not a number")
    assert err.count("\n") == 1
    bad = _write(tmp_path, "bad.csv", "timestamp,stock", ["1767225600,x"])
    code, _, err = run(["analyze", "depletion", str(bad), "--lead-time", "5"])
    assert err.startswith(f"error: {bad}: line 2:")


def test_semicolons_and_repeated_columns(tmp_path: Path) -> None:
    semi = tmp_path / "semi.csv"
    semi.write_text("timestamp;value\n" + "\n".join(r.replace(",", ";") for r in _hourly(5, 1)))
    code, out, err = run(["analyze", "anomalies", str(semi)])
    assert code == 0
    assert "note: fields are separated by ';'" in err
    assert len(out.splitlines()) == 6
    dup = _write(tmp_path, "dup.csv", "timestamp,value,value", ["1767225600,1,x"])
    code, _, err = run(["analyze", "anomalies", str(dup)])
    assert code == 2
    assert "the header has 2 'value' columns" in err


def test_anomaly_notes_and_unscored_rows(tmp_path: Path) -> None:
    rows = _hourly(60, 10)
    rows[20] = rows[20].split(",")[0] + ","  # no value
    del rows[40:50]  # a 10-hour gap
    path = _write(tmp_path, "short.csv", "timestamp,value", rows)
    code, out, err = run(["analyze", "anomalies", str(path)])
    assert code == 0
    notes = [ln for ln in err.splitlines() if ln.startswith("note: ")]
    assert "note: 1 row has no value: passed over" in notes
    assert any(n.startswith("note: 1 gap of more than 5 sampling periods") for n in notes)
    assert any("ends on line 42" in n and "no_data" in n for n in notes)
    assert any("only 49 rows with a value" in n and "warm-up" in n for n in notes)
    table = list(csv.DictReader(io.StringIO(out)))
    assert table[20]["score"] == ""
    assert table[20]["flag"] == "0"
    assert table[20]["reason"] == ""
    assert table[19]["score"] == "0.0000"
    assert table[40]["reason"] == "no_data"
    code, _, err = run(["analyze", "anomalies", str(_write(tmp_path, "ok.csv", "timestamp,value",
                                                            _hourly(200, 1)))])  # fmt: skip
    assert code == 0
    assert "note:" not in err


def test_help_says_which_reasons_the_live_service_does_not_alert_on(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["analyze", "anomalies", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "flatline and no_data" in text
    assert "the live service does not alert on them" in text


def test_depletion_says_which_columns_it_does_not_use(tmp_path: Path) -> None:
    # a timestamp,stock,sku export of two SKUs would be read as one series: say so
    lines = ["timestamp,stock,sku"] + [
        f"{1_767_225_600 + h * 3600},{1000 - 3 * h},A-{h % 2}" for h in range(200)
    ]
    path = tmp_path / "two_skus.csv"
    path.write_text("\n".join(lines) + "\n")
    said = "columns 'sku' are not used: the whole file is read as one stock series"
    code, out, _ = run(["analyze", "depletion", str(path), "--lead-time", "24"])
    assert code == 0
    assert said in json.loads(out)["notes"]
    code, _, err = run(["analyze", "depletion", str(path), "--lead-time", "24", "--format", "csv"])
    assert f"note: {said}" in err
    code, out, _ = run(["analyze", "depletion", str(_stock_csv(tmp_path)), "--lead-time", "24"])
    assert not any("not used" in n for n in json.loads(out)["notes"])
