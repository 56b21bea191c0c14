"""Conversion benchmark: our export conversion against the seed pipeline's approach.

One run generates (or reuses from ``bench-data/``) a realistic DynamoDB export in AWS's S3
layout with ``dev/sample_export.py`` (1M items by default, mixed types, about 370 bytes of
DynamoDB JSON per line, several gzip data files), then times each contender on that same
input, each in a fresh Python process so that its peak RSS (``ru_maxrss``) is its own:

``floor``
    gunzip and ``orjson.loads`` every line, nothing else: the least any converter must do.
``seed``
    what the seed's Lambda and Firehose do per record: stdlib ``json.loads`` of the line,
    ``sha256(str(NewImage))`` for the uuid, ``dynamodb_json.json_util.loads`` and
    ``json.dumps`` for ``data``, ``json.dumps`` of the row (the Lambda's output), and rows
    written as Parquet GZIP through pyarrow in ~128 MB buffers, as Firehose flushes. It is
    given two breaks: the Lambda's base64 decode/encode and Firehose's re-parse of the row
    JSON are skipped, and ``json.dumps`` gets ``default=`` for the sets and datetimes that
    dynamodb-json produces (the real Lambda raises ``TypeError`` on those items).
``ours-w1`` / ``ours-w2``
    ``dynamo_lake.lake.conversion.convert_export(summary, lake, compression=..., workers=N)``
    with the codec the package selects (the compiled one where it is built).
``ours-w1-pure``
    ``ours-w1`` with ``DYNAMO_LAKE_PURE_CODEC=1``: the pure-Python codec, for comparison.

Timing covers the work only (imports and interpreter start-up are excluded). Rates are per
input line (export item). With ``--skip-seed-above N`` the seed runs on its first N lines
only and its rate is measured on those.

Usage::

    python benchmarks/bench_convert.py                      # 1M items, with the memory check
    python benchmarks/bench_convert.py --items 200000       # quick
    python benchmarks/bench_convert.py --memory-check       # also 100k vs 1M peak RSS of ours
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parents[1]
BENCH_DATA = ROOT / "bench-data"
Compression = Literal["zstd", "gzip", "snappy"]
FIREHOSE_BUFFER_BYTES = 128 * 1024 * 1024
SEED_ROW_GROUP_ROWS = 100_000

for _extra in (ROOT / "dev", ROOT / "include"):
    if str(_extra) not in sys.path:
        sys.path.insert(0, str(_extra))


@dataclass(frozen=True)
class Measurement:
    """One contender's run, as its subprocess reported it."""

    name: str
    items: int
    rows: int
    seconds: float
    base_rss_mb: float
    peak_rss_mb: float
    child_peak_rss_mb: float
    note: str = ""
    error: str = ""

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else 0.0


# --- input ------------------------------------------------------------------------------


def ensure_input(
    items: int, files: int, kind: Literal["full", "incremental"], seed: int, compresslevel: int
) -> Path:
    """Return manifest-summary.json of a cached export with these parameters (make it if new)."""
    # Keyed by the generator's source too: a changed generator gets fresh inputs.
    generator = hashlib.sha256((ROOT / "dev" / "sample_export.py").read_bytes()).hexdigest()[:8]
    name = f"export-{generator}-{kind}-{items}i-{files}f-s{seed}-z{compresslevel}"
    bucket = BENCH_DATA / name
    done = bucket / ".complete"
    if done.exists():
        return bucket / done.read_text().strip()
    from sample_export import write_sample_export

    shutil.rmtree(bucket, ignore_errors=True)
    started = time.perf_counter()
    print(f"generating {items:,} {kind} items in {files} files into {bucket} ...", flush=True)
    summary = write_sample_export(
        bucket, items=items, files=files, kind=kind, seed=seed, compresslevel=compresslevel
    )
    done.write_text(str(summary.relative_to(bucket)))
    print(f"  generated in {time.perf_counter() - started:.1f} s", flush=True)
    return summary


def data_file_paths(summary_path: Path) -> list[tuple[Path, int]]:
    """(local path, itemCount) of each data file, found through the manifests as AWS says."""
    summary = json.loads(summary_path.read_bytes())
    key = summary["manifestFilesS3Key"]
    # The bucket root is where the summary's own key starts.
    depth = len(Path(key).parent.parts)
    bucket_root = summary_path.parents[depth]
    out = []
    for line in (bucket_root / key).read_text().splitlines():
        if line.strip():
            entry = json.loads(line)
            out.append((bucket_root / entry["dataFileS3Key"], int(entry["itemCount"])))
    return out


def _gzip_lines(path: Path) -> Iterator[bytes]:
    """Lines of a gzip file, decompressed in 1 MiB reads (multi-member safe)."""
    import zlib

    with open(path, "rb") as raw:
        decompressor = zlib.decompressobj(31)
        carry = b""
        while True:
            chunk = raw.read(1 << 20)
            if not chunk:
                break
            data = carry + decompressor.decompress(chunk)
            while decompressor.eof and decompressor.unused_data:
                rest = decompressor.unused_data
                decompressor = zlib.decompressobj(31)
                data += decompressor.decompress(rest)
            lines = data.split(b"\n")
            carry = lines.pop()
            yield from lines
        if carry:
            yield carry


# --- contenders (run inside a fresh subprocess) -----------------------------------------


def _maxrss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # kilobytes on Linux


def run_floor(summary_path: Path, out_dir: Path, limit: int | None) -> dict[str, Any]:
    import orjson

    loads = orjson.loads
    files = data_file_paths(summary_path)
    base = _maxrss_mb()
    started = time.perf_counter()
    count = 0
    for path, _ in files:
        for line in _gzip_lines(path):
            if line:
                loads(line)
                count += 1
    seconds = time.perf_counter() - started
    return {"items": count, "rows": count, "seconds": seconds, "base_rss_mb": base}


def run_seed(summary_path: Path, out_dir: Path, limit: int | None) -> dict[str, Any]:
    from datetime import date, datetime

    import pyarrow as pa
    import pyarrow.parquet as pq
    from dynamodb_json import json_util as util

    summary = json.loads(summary_path.read_bytes())
    full = summary["exportType"] == "FULL_EXPORT"
    export_ms = 0
    if full:
        moment = datetime.fromisoformat(summary["exportTime"].replace("Z", "+00:00"))
        export_ms = int(moment.timestamp() * 1000)
    files = data_file_paths(summary_path)
    out_dir.mkdir(parents=True, exist_ok=True)

    def default(value: object) -> object:
        # The seed's json.dumps raises here; we let it through to time the rest.
        if isinstance(value, set):
            return sorted(value)
        if isinstance(value, datetime | date):
            return value.isoformat()
        raise TypeError(type(value).__name__)

    schema = pa.schema(
        [
            ("uuid", pa.string()),
            ("op", pa.string()),
            ("time_stamp", pa.timestamp("ms")),
            ("data", pa.string()),
        ]
    )
    columns: dict[str, list[Any]] = {"uuid": [], "op": [], "time_stamp": [], "data": []}
    parts = 0

    def flush() -> None:
        nonlocal parts
        if not columns["uuid"]:
            return
        table = pa.table(columns, schema=schema)
        pq.write_table(
            table,
            out_dir / f"part-{parts:05d}.parquet",
            compression="gzip",
            row_group_size=SEED_ROW_GROUP_ROWS,
        )
        parts += 1
        for values in columns.values():
            values.clear()

    base = _maxrss_mb()
    started = time.perf_counter()
    count = rows = buffered = 0
    loads, dumps, sha256 = json.loads, json.dumps, hashlib.sha256
    uuids, ops, stamps, datas = (columns[k] for k in ("uuid", "op", "time_stamp", "data"))
    for path, _ in files:
        for line in _gzip_lines(path):
            if not line:
                continue
            if limit is not None and count >= limit:
                break
            count += 1
            message = loads(line)
            if full:
                image, op, stamp = message["Item"], "I", export_ms
            else:
                image = message.get("NewImage")
                op = "U" if "OldImage" in message else "I"
                stamp = int(message["Metadata"]["WriteTimestampMicros"]["N"]) // 1000
            uuid = sha256(str(image).encode("utf-8")).hexdigest()
            entry = util.loads(image)
            if entry is None:  # a delete: the seed's Lambda skips it
                continue
            data = dumps(entry, default=default)
            row = dumps({"time_stamp": stamp, "uuid": uuid, "op": op, "data": data})
            buffered += len(row)
            uuids.append(uuid)
            ops.append(op)
            stamps.append(stamp)
            datas.append(data)
            rows += 1
            if buffered >= FIREHOSE_BUFFER_BYTES:
                flush()
                buffered = 0
        if limit is not None and count >= limit:
            break
    flush()
    seconds = time.perf_counter() - started
    note = f"first {count:,} lines" if limit is not None and count >= limit else ""
    return {
        "items": count,
        "rows": rows,
        "seconds": seconds,
        "base_rss_mb": base,
        "note": note,
    }


def run_ours(
    summary_path: Path, out_dir: Path, workers: int, compression: Compression
) -> dict[str, Any]:
    from dynamo_lake.codec import active_codec
    from dynamo_lake.lake.conversion import convert_export

    base = _maxrss_mb()
    started = time.perf_counter()
    result = convert_export(
        str(summary_path), str(out_dir / "db" / "orders"), compression=compression, workers=workers
    )
    seconds = time.perf_counter() - started
    items = json.loads(summary_path.read_bytes())["itemCount"]
    return {
        "items": items,
        "rows": result.rows,
        "seconds": seconds,
        "base_rss_mb": base,
        "note": f"{active_codec()} codec, {result.files} files, {compression}",
    }


def contender_main(args: argparse.Namespace) -> int:
    """Subprocess entry: run one contender and print one JSON line."""
    summary = Path(args.source)
    out_dir = Path(args.out)
    shutil.rmtree(out_dir, ignore_errors=True)
    name = args.contender
    try:
        if name == "floor":
            report = run_floor(summary, out_dir, None)
        elif name == "seed":
            report = run_seed(summary, out_dir, args.limit or None)
        elif name.startswith("ours"):
            report = run_ours(summary, out_dir, args.workers, args.compression)
        else:
            raise SystemExit(f"unknown contender {name}")
    except ImportError as exc:
        report = {"error": f"cannot import: {exc}"}
    except Exception as exc:
        report = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    report["peak_rss_mb"] = _maxrss_mb()
    report["child_peak_rss_mb"] = _maxrss_mb(resource.RUSAGE_CHILDREN)
    print("RESULT " + json.dumps(report), flush=True)
    return 0


# --- orchestration ----------------------------------------------------------------------


def measure(
    name: str,
    summary: Path,
    *,
    limit: int = 0,
    workers: int = 1,
    compression: str = "zstd",
    repeat: int = 1,
    pure: bool = False,
) -> Measurement:
    out = BENCH_DATA / "out" / name
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--contender",
        name,
        "--source",
        str(summary),
        "--out",
        str(out),
        "--limit",
        str(limit),
        "--workers",
        str(workers),
        "--compression",
        compression,
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "dev"), str(ROOT / "include"), env.get("PYTHONPATH", "")]
    ).rstrip(os.pathsep)
    env.pop("DYNAMO_LAKE_PURE_CODEC", None)
    if pure:
        env["DYNAMO_LAKE_PURE_CODEC"] = "1"
    print(f"running {name} ...", flush=True)
    runs = [_measure_once(name, command, env) for _ in range(max(1, repeat))]
    ok = [m for m in runs if not m.error]
    if not ok:
        return runs[-1]
    # The fastest run is the least disturbed by other load; memory is the worst seen.
    best = min(ok, key=lambda m: m.seconds)
    return replace(
        best,
        peak_rss_mb=max(m.peak_rss_mb for m in ok),
        child_peak_rss_mb=max(m.child_peak_rss_mb for m in ok),
        note=f"{best.note}; best of {len(ok)}".lstrip("; ") if len(ok) > 1 else best.note,
    )


def _measure_once(name: str, command: list[str], env: dict[str, str]) -> Measurement:
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        return Measurement(name, 0, 0, 0.0, 0.0, 0.0, 0.0, error=" | ".join(tail) or "no output")
    report = json.loads(lines[-1][len("RESULT ") :])
    if report.get("error"):
        return Measurement(name, 0, 0, 0.0, 0.0, report["peak_rss_mb"], 0.0, error=report["error"])
    return Measurement(
        name=name,
        items=report["items"],
        rows=report["rows"],
        seconds=report["seconds"],
        base_rss_mb=report["base_rss_mb"],
        peak_rss_mb=report["peak_rss_mb"],
        child_peak_rss_mb=report["child_peak_rss_mb"],
        note=report.get("note", ""),
    )


def print_table(results: list[Measurement]) -> None:
    by_name = {m.name: m for m in results if not m.error}
    seed = by_name.get("seed")
    floor = by_name.get("floor")
    header = (
        f"{'contender':<12} {'items':>10} {'seconds':>9} {'items/s':>10} {'RSS MB':>8} "
        f"{'base MB':>8} {'vs seed':>8} {'vs floor':>9}  note"
    )
    print()
    print(header)
    print("-" * len(header))
    for m in results:
        if m.error:
            print(f"{m.name:<12} unavailable: {m.error}")
            continue
        vs_seed = f"{m.rate / seed.rate:.1f}x" if seed and seed.rate else "-"
        vs_floor = f"{floor.rate / m.rate:.2f}x" if floor and m.rate else "-"
        rss = m.peak_rss_mb
        note = m.note
        if m.rows != m.items:
            note = f"{m.rows:,} rows; {note}".rstrip("; ")
        if m.child_peak_rss_mb > 1:
            note = f"{note}; each worker peak {m.child_peak_rss_mb:.0f} MB".lstrip("; ")
        print(
            f"{m.name:<12} {m.items:>10,} {m.seconds:>9.2f} {m.rate:>10,.0f} {rss:>8.0f} "
            f"{m.base_rss_mb:>8.0f} {vs_seed:>8} {vs_floor:>9}  {note}"
        )
    print()
    print("vs seed: items/s divided by the seed's (higher is better; goal >= 8x on one core).")
    print("vs floor: time per item relative to gunzip+orjson.loads (lower is better; goal <= 2.5x")
    print("on one core).")
    pure, compiled = by_name.get("ours-w1-pure"), by_name.get("ours-w1")
    if pure and compiled and pure.rate:
        print(
            f"compiled codec: ours-w1 takes {compiled.seconds / pure.seconds:.2f}x the time of "
            f"ours-w1-pure ({compiled.rate / pure.rate:.2f}x the items/s)"
        )
    print("RSS MB: peak RSS of the contender's process; base MB: after its imports.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--kind", choices=("full", "incremental"), default="full")
    parser.add_argument("--seed", type=int, default=0, help="generator seed")
    parser.add_argument("--compresslevel", type=int, default=6, help="gzip level of the input")
    parser.add_argument(
        "--compression",
        choices=("zstd", "gzip", "snappy"),
        default="zstd",
        help="our Parquet compression",
    )
    parser.add_argument(
        "--skip-seed-above",
        type=int,
        default=0,
        metavar="N",
        help="time the seed approach on the first N lines only (0: all)",
    )
    parser.add_argument("--no-seed", action="store_true", help="skip the seed approach")
    parser.add_argument(
        "--memory-check",
        action="store_true",
        help="also compare our peak RSS at 100k and 1M items (on by default at 1M items)",
    )
    parser.add_argument("--workers", type=int, default=2, help="cores for the ours-wN figure")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run floor and ours N times each and keep the fastest (the seed runs once)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results here")
    # Subprocess mode (internal).
    parser.add_argument("--contender", help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.contender:
        return contender_main(args)

    summary = ensure_input(args.items, args.files, args.kind, args.seed, args.compresslevel)
    print(f"input: {summary}")
    print(f"cpu count: {os.cpu_count()}, python {sys.version.split()[0]}")
    repeat = args.repeat
    results = [measure("floor", summary, repeat=repeat)]
    results.append(
        measure(
            "ours-w1-pure",
            summary,
            workers=1,
            compression=args.compression,
            repeat=repeat,
            pure=True,
        )
    )
    results.append(
        measure("ours-w1", summary, workers=1, compression=args.compression, repeat=repeat)
    )
    if args.workers > 1:
        results.append(
            measure(
                f"ours-w{args.workers}",
                summary,
                workers=args.workers,
                compression=args.compression,
                repeat=repeat,
            )
        )
    if not args.no_seed:
        results.append(measure("seed", summary, limit=args.skip_seed_above))
    print_table(results)

    memory: list[dict[str, Any]] = []
    if args.memory_check or args.items == 1_000_000:
        memory = memory_check(args, results)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "input": str(summary),
                    "cpu_count": os.cpu_count(),
                    "results": [asdict(m) | {"items_per_s": m.rate} for m in results],
                    "memory_check": memory,
                },
                indent=2,
            )
        )
    return 0


def memory_check(args: argparse.Namespace, results: list[Measurement]) -> list[dict[str, Any]]:
    """Our peak RSS at 100k and at 1M items: flat means the 1M figure is at most 1.5x.

    Printed twice: with the same number of data files (what the goal names), and with about
    the same items per data file, since a converter that buffers per file (e.g. a Parquet
    row group) grows with the file size, which AWS chooses, not with the export size.
    """
    large_items, small_items = 1_000_000, 100_000
    per_file = large_items / args.files
    layouts = [("same files", args.files)]
    same_size_files = max(1, round(small_items / per_file))
    if same_size_files != args.files:
        layouts.append(("same items/file", same_size_files))
    large = _ours_w1_at(args, results, large_items, args.files)
    checks: list[dict[str, Any]] = []
    for label, small_files in layouts:
        small = _ours_w1_at(args, results, small_items, small_files)
        if small.error or large.error:
            print(f"memory check: unavailable ({small.error or large.error})")
            return checks
        ratio = large.peak_rss_mb / small.peak_rss_mb
        verdict = "flat" if ratio <= 1.5 else "NOT flat"
        checks.append(
            {
                "layout": label,
                "small": {"items": small_items, "files": small_files, "rss_mb": small.peak_rss_mb},
                "large": {"items": large_items, "files": args.files, "rss_mb": large.peak_rss_mb},
                "ratio": ratio,
            }
        )
        print(
            f"memory check, ours-w1, {label}: peak RSS {small.peak_rss_mb:.0f} MB at "
            f"{small_items:,} items in {small_files} files, {large.peak_rss_mb:.0f} MB at "
            f"{large_items:,} in {args.files}: {ratio:.2f}x ({verdict}; goal <= 1.5x)"
        )
    return checks


def _ours_w1_at(
    args: argparse.Namespace, results: list[Measurement], items: int, files: int
) -> Measurement:
    if items == args.items and files == args.files:
        found = next((m for m in results if m.name == "ours-w1" and not m.error), None)
        if found:
            return found
    summary = ensure_input(items, files, args.kind, args.seed, args.compresslevel)
    return measure("ours-w1", summary, workers=1, compression=args.compression)


if __name__ == "__main__":
    raise SystemExit(main())
