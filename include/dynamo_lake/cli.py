"""The ``dynamo-lake`` command: the core's jobs from a shell, one JSON line out.

``dynamo-lake convert <manifest-summary.json> --lake <table folder>`` converts one export.
S3 settings come from the usual AWS environment variables (``AWS_ENDPOINT_URL`` included).
Errors exit non-zero with one line that names the problem; no traceback for expected ones.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence

import orjson

from dynamo_lake.contract import COMPRESSIONS
from dynamo_lake.errors import DynamoLakeError
from dynamo_lake.lake.conversion import convert_export

EXIT_ERROR = 1
EXIT_USAGE = 2


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
    return parser


def _stop_on_sigterm(signum: int, frame: object) -> None:
    # SystemExit unwinds like an error: worker processes are terminated and the staging
    # of this invocation is removed, as on Ctrl-C.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.workers < 1 or args.max_bad_lines < 0:
        print("dynamo-lake: --workers must be >= 1 and --max-bad-lines >= 0", file=sys.stderr)
        return EXIT_USAGE
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
