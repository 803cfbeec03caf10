"""`make bench`: batch scoring of Telco-shaped rows with the churn package, against the in-process floor.

    python tests/benchmark/batch_bench.py RUN_SUMMARY_JSON --rows 1000000 --out FILE

1. Synthesise `--rows` rows from the real Telco file (shared/data): rows drawn with replacement
   (seeded), the numbers moved by small noise (tenure by up to one month, the charges by about 1 %,
   kept in their ranges, the blank TotalCharges kept missing), each customer id made unique. Written as
   Parquet, chunk by chunk, with the numbers typed as a Parquet export holds them.
2. The floor, in a child process: the whole frame read, then one `FeatureSet.transform` plus one
   `predict` on it, timed (reading not included).
3. `flowline score PACKAGE --input ROWS.parquet`, in a child process (`--chunk-rows`, default 50,000):
   rows per second over the run's own time (read, contract, transform, predict, decisions, write), and
   its wall time with start-up. Then the same on a tenth of the rows: peak memory should follow the
   chunk size, not the input.

Peak RSS of each child comes from os.wait4's rusage. Writes JSON and prints a Markdown table. The goal
(issue 21): at least half the floor's rate, with peak memory bounded by the chunk size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from flowline.datasets import dataset_path

SYNTH_CHUNK = 100_000
FLOOR = """
import json, sys, time
import pandas as pd
from flowline.package.format import Package
package = Package.open(sys.argv[1])
model, feature_set = package.model, package.feature_set
frame = pd.read_parquet(sys.argv[2])
started = time.perf_counter()
scores = model.predict(feature_set.transform(frame))
print(json.dumps({"seconds": time.perf_counter() - started, "rows": len(scores)}))
"""


def synthesise(rows: int, path: Path, seed: int = 0) -> None:
    """`rows` Telco-shaped rows (see the module docstring), written to Parquet in chunks."""
    telco = pd.read_csv(dataset_path("telco_customer_churn"), dtype=str, keep_default_na=False)
    rng = np.random.default_rng(seed)
    tenure = telco["tenure"].astype(float)
    monthly = telco["MonthlyCharges"].astype(float)
    total = pd.to_numeric(telco["TotalCharges"].str.strip(), errors="coerce")
    writer, start = None, 0
    while start < rows:
        count = min(SYNTH_CHUNK, rows - start)
        pick = rng.integers(0, len(telco), count)
        chunk = telco.iloc[pick].reset_index(drop=True)
        chunk["customerID"] = chunk["customerID"] + "-" + pd.Series(np.arange(start, start + count)).astype(str)
        chunk["SeniorCitizen"] = chunk["SeniorCitizen"].astype(int)
        chunk["tenure"] = np.clip(tenure.to_numpy()[pick] + rng.integers(-1, 2, count), 0, 72).astype(int)
        noise = 1 + rng.normal(0, 0.01, count)
        chunk["MonthlyCharges"] = np.round(np.clip(monthly.to_numpy()[pick] * noise, 18.25, 118.75), 2)
        chunk["TotalCharges"] = np.round(total.to_numpy()[pick] * noise, 2)  # blank (tenure 0) stays missing
        table = pa.Table.from_pandas(chunk, preserve_index=False)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
        start += count
    writer.close()


def run_child(command: list[str]) -> tuple[str, float, float]:
    """Run a child process; its stdout, wall seconds and peak RSS in MiB (os.wait4's rusage: Linux gives KiB)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        if process.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n{err.read()[-3000:]}")
        return out.read(), wall, usage.ru_maxrss / 1024


def batch_run(package: str, rows_file: Path, folder: Path, chunk_rows: int) -> dict:
    output = folder / f"scores-{rows_file.stem}.parquet"
    command = [sys.executable, "-m", "flowline.pipelines.cli", "score", package, "--input", str(rows_file),
               "--output", str(output), "--chunk-rows", str(chunk_rows), "--json",
               "--audit-log", str(folder / "audit.jsonl")]
    out, wall, rss = run_child(command)
    summary = json.loads(out)
    counts = summary["counts"]
    return {"rows": counts["rows_in"], "rows_scored": counts["rows_scored"],
            "rows_quarantined": counts["rows_quarantined"], "seconds": summary["seconds"], "wall_seconds": wall,
            "rows_per_second": counts["rows_in"] / summary["seconds"], "peak_rss_mib": rss,
            "output_rows": pq.ParquetFile(output).metadata.num_rows}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("summary", help="a `flowline run churn --summary` file: its package is scored")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-rows", type=int, default=50_000)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    package = json.loads(Path(args.summary).read_text())["package"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="batch-bench-", dir=args.out.parent) as name:
        folder = Path(name)
        full, tenth = folder / "rows.parquet", folder / "tenth.parquet"
        synthesise(args.rows, full)
        synthesise(max(args.rows // 10, 1), tenth, seed=1)
        out, floor_wall, floor_rss = run_child([sys.executable, "-c", FLOOR, package, str(full)])
        floor = json.loads(out)
        floor.update(rows_per_second=floor["rows"] / floor["seconds"], wall_seconds=floor_wall,
                     peak_rss_mib=floor_rss)
        batch = batch_run(package, full, folder, args.chunk_rows)
        small = batch_run(package, tenth, folder, args.chunk_rows)
        input_mib = full.stat().st_size / 2**20
    report = {
        "benchmark": "batch scoring of Telco-shaped rows with the churn package (flowline score, Parquet in and out)",
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS")},
        "settings": {"rows": args.rows, "chunk_rows": args.chunk_rows, "input_parquet_mib": round(input_mib, 1)},
        "package": package,
        "floor": floor,
        "batch": batch,
        "batch_tenth_of_the_rows": small,
        "ratio_to_floor": batch["rows_per_second"] / floor["rows_per_second"],
        "peak_rss_ratio_full_to_tenth": batch["peak_rss_mib"] / small["peak_rss_mib"],
        "every_row_accounted_for": batch["rows"] == batch["rows_scored"] + batch["rows_quarantined"]
        and batch["output_rows"] == batch["rows_scored"],
    }
    args.out.write_text(json.dumps(report, indent=1))
    print(markdown_table(report))
    print(f"\nrate {report['ratio_to_floor']:.2f}x the floor's (goal >= 0.5); peak RSS {batch['peak_rss_mib']:.0f} MiB "
          f"for {args.rows:,} rows, {small['peak_rss_mib']:.0f} MiB for a tenth of them "
          f"(floor: {floor['peak_rss_mib']:.0f} MiB); report: {args.out}")


def markdown_table(report: dict) -> str:
    floor, batch, small = report["floor"], report["batch"], report["batch_tenth_of_the_rows"]
    lines = ["| run | rows | rows/s | seconds | peak RSS (MiB) |", "|---|---|---|---|---|",
             f"| floor: transform + predict, whole frame | {floor['rows']:,} | {floor['rows_per_second']:,.0f} | "
             f"{floor['seconds']:.1f} | {floor['peak_rss_mib']:,.0f} |",
             f"| flowline score | {batch['rows']:,} | {batch['rows_per_second']:,.0f} | {batch['seconds']:.1f} | "
             f"{batch['peak_rss_mib']:,.0f} |",
             f"| flowline score, a tenth of the rows | {small['rows']:,} | {small['rows_per_second']:,.0f} | "
             f"{small['seconds']:.1f} | {small['peak_rss_mib']:,.0f} |"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
