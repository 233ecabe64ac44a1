"""``cloud-service analyze``: the live detectors and forecasts on users' own CSV exports.

    cloud-service analyze anomalies FILE.csv [-o OUT.csv] [--sensitivity S] [--kind gauge]
    cloud-service analyze depletion FILE.csv --lead-time HOURS [--safety-stock UNITS]
        [--service-level P] [--review-period HOURS] [--horizon HOURS] [--format json|csv]
        [--production COUNTS.csv [--counter-bits 16|32]]

A file we cannot use gets one line on stderr saying which file, what and where, and exit
code 2; what we assumed about a usable file (time zone, separator, gaps, missing values, the
detector's warm-up, negative stock) is stated on stderr as ``note:`` lines. numba is imported
only when a command runs, so ``register`` costs the parser nothing.

The anomaly output is the kernel's, reasons included: ``flatline`` and ``no_data`` rows are
flagged here although the live service never alerts on those reasons (it watches stuck
sensors with its own flat-run tracking and silence with ingest health, see docs/analytics.md).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from cloud_service.analytics.csvio import Series

EXIT_USAGE = 2


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``analyze`` command to an ``add_subparsers()`` object; returns its parser.

    Dispatch the parsed namespace with :func:`run` (``args.command == "analyze"``).
    """
    analyze: argparse.ArgumentParser = subparsers.add_parser(
        "analyze", help="run the analytics on a CSV export (anomalies, stock depletion)"
    )
    sub = analyze.add_subparsers(dest="analysis", required=True)

    an = sub.add_parser(
        "anomalies",
        help="score each row of a timestamp,value file",
        description="Score each row with the live anomaly detector. Reasons flatline and "
        "no_data (a row after a gap of more than 5 sampling periods) are the kernel's: the live "
        "service does not alert on them (stuck sensors and silence have their own rules there, "
        "fed by flat-run tracking and ingest health), so such rows here need not match a live "
        "alert.",
    )
    an.add_argument("file", type=Path, help="CSV with columns timestamp,value")
    an.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    an.add_argument(
        "--sensitivity", type=float, default=1.0, help="1 = live default; 2 flags more readily"
    )
    an.add_argument("--kind", choices=("gauge", "counter"), default="gauge")
    an.set_defaults(analyze_handler=_anomalies)

    dp = sub.add_parser("depletion", help="time to stockout and reorder from a stock series")
    dp.add_argument("file", type=Path, help="CSV with columns timestamp,stock")
    dp.add_argument("--lead-time", type=float, required=True, metavar="HOURS")
    dp.add_argument("--safety-stock", type=float, default=0.0, metavar="UNITS")
    dp.add_argument("--service-level", type=float, default=0.95, metavar="P")
    dp.add_argument("--review-period", type=float, default=24.0, metavar="HOURS")
    dp.add_argument("--horizon", type=int, default=2160, metavar="HOURS")
    dp.add_argument("--format", choices=("json", "csv"), default="json")
    dp.add_argument(
        "--production",
        type=Path,
        metavar="FILE.csv",
        help="timestamp,count: the good-pieces counter of the line that refills this stock",
    )
    dp.add_argument(
        "--counter-bits",
        type=int,
        metavar="BITS",
        help="counter width: a decrease explained by wrapping is a rollover (else a reset)",
    )
    dp.set_defaults(analyze_handler=_depletion)
    return analyze


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _Usage(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise _Usage(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise _Usage(f"{path}: {exc.strerror or exc}") from None


class _Usage(Exception):
    pass


def _notes(notes: list[str], err: TextIO) -> None:
    for n in notes:
        print(f"note: {n}", file=err)


MAX_HOURS = 87_600  # ten years: beyond that a lead time or horizon is a typo
MAX_GAP_MS = 366 * 86_400_000  # rows further apart: a wrong timestamp, or two files in one


def _load(path: Path, column: str) -> Series:
    """``path`` read as a ``timestamp,<column>`` series; errors name the file."""
    from cloud_service.analytics.csvio import CsvError, read_series  # noqa: PLC0415

    try:
        return read_series(_read(path), column, max_gap_ms=MAX_GAP_MS)
    except CsvError as exc:
        raise CsvError(f"{path}: {exc}") from None


def _anomaly_notes(series: Series, warmup: float) -> list[str]:
    """What the scores of this file rest on: gaps (flagged ``no_data``) and the warm-up."""
    import numpy as np  # noqa: PLC0415

    from cloud_service.analytics.anomaly import NO_DATA_FACTOR  # noqa: PLC0415
    from cloud_service.analytics.csvio import gaps, plural  # noqa: PLC0415

    notes: list[str] = []
    period, after = gaps(series.ts_ms, NO_DATA_FACTOR)
    if after.size:
        first = series.lines[int(after[0])] if series.lines else int(after[0]) + 2
        notes.append(
            f"{plural(int(after.size), 'gap')} of more than {NO_DATA_FACTOR:g} sampling periods "
            f"(median period {period / 1000:g} s; the first ends on line {first}): the row "
            "after each is flagged no_data, a reason the live service leaves to its silence "
            "rule"
        )
    valued = int(np.count_nonzero(np.isfinite(series.values)))
    if valued <= warmup:
        notes.append(
            f"only {plural(valued, 'row')} with a value, and the detector's first {warmup:g} "
            "are its warm-up: no spike, level, shift, burst or flatline can be flagged in this "
            "file (gaps still are)"
        )
    return notes


def _anomalies(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from cloud_service.analytics.anomaly import detect  # noqa: PLC0415
    from cloud_service.analytics.codes import reason_name  # noqa: PLC0415
    from cloud_service.analytics.kernels.anomaly import DEFAULT_WARMUP  # noqa: PLC0415

    if not (math.isfinite(args.sensitivity) and args.sensitivity > 0):
        raise _Usage("--sensitivity must be a positive number")
    series = _load(args.file, "value")
    det = detect(series.ts_ms, series.values, sensitivity=args.sensitivity, kind=args.kind)
    _notes([*series.notes, *_anomaly_notes(series, DEFAULT_WARMUP)], err)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*series.header, "score", "flag", "reason"])
    for row, x, sc, fl, rc in zip(
        series.rows, series.values, det.score, det.flag, det.reason, strict=True
    ):
        why = reason_name(int(rc)) if sc >= 0.5 or fl else ""
        # a row without a value was not scored (unless it ends a gap: flagged no_data)
        score = f"{sc:.4f}" if math.isfinite(x) or fl else ""
        writer.writerow([*row, score, int(fl), why])
    if args.output is not None:
        try:
            args.output.write_text(buf.getvalue(), encoding="utf-8")
        except OSError as exc:
            raise _Usage(f"{args.output}: {exc.strerror or exc}") from None
    else:
        out.write(buf.getvalue())
    return 0


def _depletion(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from cloud_service.analytics.depletion import Production, analyze  # noqa: PLC0415

    series = _load(args.file, "stock")
    keep = series.values == series.values  # drop rows without a stock value
    production = None
    notes = list(series.notes)
    unused = [h.strip() for h in series.header if h.strip().lower() not in ("timestamp", "stock")]
    if unused:  # e.g. a site or SKU column: this is one series, whatever they say
        names = ", ".join(repr(h) for h in unused)
        notes.append(f"columns {names} are not used: the whole file is read as one stock series")
    if args.counter_bits is not None and not 1 <= args.counter_bits <= 64:
        raise _Usage("--counter-bits must be between 1 and 64")
    for flag, value, most in (
        ("--lead-time", args.lead_time, MAX_HOURS),
        ("--review-period", args.review_period, MAX_HOURS),
        ("--safety-stock", args.safety_stock, math.inf),
    ):
        if not (math.isfinite(value) and 0 <= value <= most):
            raise _Usage(f"{flag} must be a number from 0 to {most:g}")
    if not 1 <= args.horizon <= MAX_HOURS:
        raise _Usage(f"--horizon must be from 1 to {MAX_HOURS} hours")
    if args.production is not None:
        counts = _load(args.production, "count")
        notes += [f"{args.production.name}: {n}" for n in counts.notes]
        ok = counts.values == counts.values
        production = Production(
            counts.ts_ms[ok], counts.values[ok], counter=True, counter_bits=args.counter_bits
        )
    result = analyze(
        series.ts_ms[keep],
        series.values[keep],
        lead_time_h=args.lead_time,
        safety_stock=args.safety_stock,
        service_level=args.service_level,
        review_h=args.review_period,
        horizon_h=args.horizon,
        production=production,
    )
    notes += result.notes
    record = result.as_record()
    if args.format == "json":
        json.dump({**record, "notes": notes}, out, indent=2)
        out.write("\n")
    else:
        _notes(notes, err)
        writer = csv.DictWriter(out, fieldnames=list(record), lineterminator="\n")
        writer.writeheader()
        writer.writerow(record)
    return 0


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run a parsed ``analyze`` command; every expected failure is one line and exit code 2."""
    from cloud_service.analytics.csvio import CsvError  # noqa: PLC0415

    out = out or sys.stdout
    err = err or sys.stderr
    try:
        code: int = args.analyze_handler(args, out, err)
    except (_Usage, CsvError, ValueError) as exc:
        print(f"error: {exc}", file=err)
        return EXIT_USAGE
    return code


def main(
    argv: list[str] | None = None, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Stand-alone entry (tests, ``python -m cloud_service.analytics.cli``)."""
    parser = argparse.ArgumentParser(prog="cloud-service")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return run(args, out, err)


if __name__ == "__main__":
    sys.exit(main())
