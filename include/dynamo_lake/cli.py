"""The ``dynamo-lake`` command: the core's jobs from a shell, one JSON line out.

``dynamo-lake convert <manifest-summary.json> --lake <table folder>`` converts one export;
``dynamo-lake state --lake ... --keys pk,sk`` prints the lake's latest state (a count, or
the items); ``dynamo-lake reconcile --lake ... --export <manifest-summary.json> --keys ...``
compares an export with the lake (exit 0 consistent, 3 drift, 4 drift repaired, 1 error).
S3 settings come from the usual AWS environment variables (``AWS_ENDPOINT_URL`` included).
Errors exit non-zero with one line that names the problem; no traceback for expected ones.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable, Sequence

import orjson

from dynamo_lake.cdc import datetime_to_micros
from dynamo_lake.config import MAX_EPSILON_MS
from dynamo_lake.contract import COMPRESSIONS
from dynamo_lake.errors import ConfigError, DynamoLakeError
from dynamo_lake.lake.conversion import convert_export
from dynamo_lake.storage import resolve

EXIT_ERROR = 1
EXIT_USAGE = 2
#: ``reconcile`` found drift (the lake differs from the export as of T).
EXIT_DRIFT = 3
#: ``reconcile --repair`` found drift, wrote corrective rows, and the re-check was clean.
EXIT_REPAIRED = 4


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dynamo-lake", description="DynamoDB exports into an S3 data lake, losslessly."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    convert = commands.add_parser(
        "convert",
        help="convert one PITR export (full or incremental) into lake rows",
        description="Convert one DynamoDB export into Parquet CDC rows in a lake table. "
        "Prints a one-line JSON summary.",
    )
    convert.add_argument(
        "source", help="s3:// URI of the export's manifest-summary.json, or a local path to it"
    )
    convert.add_argument(
        "--lake",
        required=True,
        help="the lake table: s3://bucket/dynamo-cdc/<database>/<table> or a local folder",
    )
    convert.add_argument("--compression", choices=COMPRESSIONS, default="zstd")
    convert.add_argument(
        "--workers", type=int, default=1, help="processes converting data files (default 1)"
    )
    convert.add_argument(
        "--max-bad-lines",
        type=int,
        default=0,
        help="lines that may fail to parse (kept under _errors/) before the export fails",
    )
    convert.add_argument(
        "--force",
        action="store_true",
        help="convert even if the lake already holds this export's events from another "
        "export (same export time or an overlapping window); readers then see them twice",
    )
    convert.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")

    state = commands.add_parser(
        "state",
        help="the lake's latest state: how many items live, or each as canonical JSON",
        description="The lake table's latest state as of a moment (default: everything in "
        "it): per key the row with the greatest time_stamp (ties: D over U over I, then the "
        "greater uuid); the item lives unless that row is a D.",
    )
    state.add_argument("--lake", required=True, help="the lake table (s3:// or a folder)")
    state.add_argument(
        "--keys", required=True, help="the key attributes, partition key first: pk or pk,sk"
    )
    state.add_argument("--as-of", help="the moment (UTC, ISO-8601); default: the newest")
    shown = state.add_mutually_exclusive_group()
    shown.add_argument("--count", action="store_true", help="print the count (default)")
    shown.add_argument("--jsonl", action="store_true", help="print each live item, sorted by key")

    reconcile = commands.add_parser(
        "reconcile",
        help="compare an export of the table with the lake's latest state",
        description="Compare a DynamoDB export with the lake as of T (default: the export's "
        "time): a full export key by key (missing, extra, different), an incremental one as "
        "the day's changes (and phantoms). Prints the report as one JSON line. Exit 0: "
        f"consistent; {EXIT_DRIFT}: drift; {EXIT_REPAIRED}: drift found and repaired (the "
        "re-check was clean); 1: error.",
    )
    reconcile.add_argument("--lake", required=True, help="the lake table (s3:// or a folder)")
    reconcile.add_argument(
        "--export", required=True, help="the export's manifest-summary.json (s3:// or a path)"
    )
    reconcile.add_argument(
        "--keys",
        required=True,
        help="the key attributes, partition key first: pk or pk,sk; their types (S, N, B) "
        "come from the export's items, or are given as pk:S,sk:N",
    )
    reconcile.add_argument(
        "--as-of",
        help="T (UTC, ISO-8601); it must be the export's time (a full export's exportTime, an "
        "incremental export's window end), which is also the default",
    )
    reconcile.add_argument(
        "--epsilon-ms",
        type=int,
        default=1000,
        help=f"tolerance around T for stream times, 0 to {MAX_EPSILON_MS} (default 1000)",
    )
    reconcile.add_argument(
        "--settle-margin-minutes",
        type=int,
        default=30,
        help="how long before now T must lie, so that the stream's changes up to T have "
        "reached the lake (default 30, longer than Firehose's buffering)",
    )
    reconcile.add_argument(
        "--repair", action="store_true", help="write corrective rows for the drift found"
    )
    reconcile.add_argument("--report", help="also write the report (JSON) to this path")
    reconcile.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    return parser


def _stop_on_sigterm(signum: int, frame: object) -> None:
    # SystemExit unwinds like an error: worker processes are terminated and the staging
    # of this invocation is removed, as on Ctrl-C.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.command == "convert" and (args.workers < 1 or args.max_bad_lines < 0):
        print("dynamo-lake: --workers must be >= 1 and --max-bad-lines >= 0", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "reconcile" and args.settle_margin_minutes < 0:
        print("dynamo-lake: --settle-margin-minutes must be >= 0", file=sys.stderr)
        return EXIT_USAGE
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    if args.command == "state":
        return _guarded(lambda: _state(args))
    if args.command == "reconcile":
        return _guarded(lambda: _reconcile(args))
    try:
        result = convert_export(
            args.source,
            args.lake,
            compression=args.compression,
            workers=args.workers,
            max_bad_lines=args.max_bad_lines,
            force=args.force,
        )
    except DynamoLakeError as exc:
        print(f"dynamo-lake: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:  # a store failing in a way the core did not name: still one line
        print(f"dynamo-lake: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_ERROR
    print(orjson.dumps(result.to_json()).decode())
    return 0


def _guarded(command: Callable[[], int]) -> int:
    try:
        return command()
    except DynamoLakeError as exc:
        print(f"dynamo-lake: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:
        print(f"dynamo-lake: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_ERROR


def _keys(text: str) -> list[str]:
    keys = [part.strip() for part in text.split(",") if part.strip()]
    if not keys or len(keys) > 2:
        raise ConfigError(f"--keys {text!r}: give the partition key, or partition,sort key")
    return keys


def _state(args: argparse.Namespace) -> int:
    from dynamo_lake.exports.planning import parse_time
    from dynamo_lake.lake.query import LakeDatabase, lake_dataset, latest_state_sql, live_count_sql
    from dynamo_lake.reconciliation.compare import refuse_keyless

    keys = []
    for text in _keys(args.keys):
        name, _, kind = text.partition(":")
        if kind and kind not in ("S", "N", "B"):
            raise ConfigError(f"--keys {text!r}: a key attribute's type is S, N or B")
        keys.append(name)
    moment = parse_time(args.as_of, "--as-of")
    as_of = datetime_to_micros(moment) if moment else None
    database = LakeDatabase()
    try:
        rows = database.add("lake", lake_dataset(args.lake), keys)
        ((keyless, example),) = database.connection.sql(
            "SELECT count(*), max(uuid) FROM lake WHERE k IS NULL"
        ).fetchall()
        if rows and keyless == rows:
            raise ConfigError(
                f"--keys {args.keys!r}: no row of the lake has these key attributes; give "
                "the table's key attributes, partition key first"
            )
        refuse_keyless("lake", keyless, example, keys)
        if args.jsonl:
            ordered = f"SELECT data FROM ({latest_state_sql('lake', as_of)}) live ORDER BY k"
            for batch in database.connection.sql(ordered).to_arrow_reader(10_000):
                for data in batch.column(0).to_pylist():
                    sys.stdout.write(data + "\n")
            return 0
        ((count,),) = database.connection.sql(live_count_sql("lake", as_of)).fetchall()
    finally:
        database.close()
    print(orjson.dumps({"lake": args.lake, "as_of": args.as_of, "live": count}).decode())
    return 0


def _reconcile(args: argparse.Namespace) -> int:
    from dynamo_lake.reconciliation.run import reconcile_export

    report = reconcile_export(
        lake=args.lake,
        export=args.export,
        keys=_keys(args.keys),
        as_of=args.as_of,
        epsilon_ms=args.epsilon_ms,
        repair=args.repair,
        settle_margin_minutes=args.settle_margin_minutes,
    )
    payload = orjson.dumps(report.to_json())
    if args.report:
        resolve(args.report).write_bytes(payload)
    print(payload.decode())
    if report.status == "error":
        return EXIT_ERROR
    return {"drift": EXIT_DRIFT, "repaired": EXIT_REPAIRED}.get(report.status, 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
