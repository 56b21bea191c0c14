"""Write a realistic DynamoDB point-in-time export, in AWS's exact S3 layout, to a directory.

The directory stands for a bucket: its root is the bucket root and every S3 key is a relative
path under it, so ``<bucket_root>/<prefix>/AWSDynamoDB/<ExportId>/manifest-summary.json`` is
the object ``s3://<bucket>/<prefix>/AWSDynamoDB/<ExportId>/manifest-summary.json``. What is
written follows ``docs/aws-facts.md``: ``_started`` first, gzip data files (a full
export's under its own folder, an incremental export's in the prefix's SHARED
``AWSDynamoDB/data/`` folder), ``manifest-files.json`` (one JSON line per data file, with the
base64 MD5 of the stored gzip object and an S3-style multipart ETag) and
``manifest-summary.json``, each with its ``.md5`` (base64 MD5 of the JSON bytes); the summary
is written last, as the mark of a complete export.

Items are an orders table with a composite key (``pk`` S like ``customer#000123``, ``sk`` S or
N) and about 370 bytes of DynamoDB JSON per full-export line, mixing every type: S (with
Unicode, astral characters, quotes, backslashes, newlines and strings shaped like timestamps),
N (integers, decimals, 38 significant digits, exponents), B, BOOL, NULL, M, L, SS, NS, BS.
Output is a pure function of the arguments (and ``seed``): the same call writes the same bytes.

Data lines are streamed into ``gzip`` per file in batches, so memory stays flat in the export
size; one million items take some tens of seconds on one core.

CLI::

    python dev/sample_export.py OUT_DIR --items 100000 --files 4 --kind full
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import orjson

__all__ = ["DEFAULT_EXPORT_TIME", "write_sample_export"]

Kind = Literal["full", "incremental"]
OutputView = Literal["NEW_AND_OLD_IMAGES", "NEW_IMAGE"]
SortKeyType = Literal["S", "N"]

DEFAULT_EXPORT_TIME = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)
REGION = "us-east-1"
ACCOUNT = "123456789012"
# S3 multipart part size used for the ETag; AWS's writer part size is unknown (any works).
_ETAG_PART_BYTES = 8 * 1024 * 1024
_BATCH_LINES = 2000
# Share of incremental lines per change kind (the rest are updates).
_INSERT_SHARE = 0.35
_DELETE_SHARE = 0.15

# Value pools: drawn once per seed, then picked per item (fast, and still varied).
_FIRST_NAMES = (
    "Ana", "Zoë", "José", "Łukasz", "Søren", "Ngọc", "Ådne", "Chloé", "Mia", "Noah",
    "李雷", "韩梅梅", "さくら", "Дмитрий", "Ολυμπία", "אורי", "محمد", "Jürgen", "Ife", "Ravi",
)  # fmt: skip
_LAST_NAMES = (
    "Smith", "O'Brien", "Nguyễn", "García", "Müller", "Kowalski", "Ōtani", "Dubois",
    "Иванова", "Papadopoulos", "Singh", "Okafor", "Johansson", "da Silva", "王", "Lee",
)  # fmt: skip
_STATUSES = ("PENDING", "PAID", "SHIPPED", "DELIVERED", "CANCELLED", "REFUNDED")
_TAGS = (
    "gift", "express", "fragile", "bulk", "promo", "b2b", "repeat", "intl", "vip", "eco",
    "🎁", "spring-sale", "black_friday",
)  # fmt: skip
_NOTES = (
    'Leave at the "back" door',
    "Call before delivery\nGate code: 1234",
    "Path C:\\orders\\incoming",
    "Fragile 🥚🥚 handle with care",
    "Deliver to 𝔊𝔞𝔯𝔞𝔤𝔢 (astral letters)",
    "Tab\tseparated\tnote",
    "Ünïcödé ñote — with dashes “and quotes”",
    "",
    "<script>alert('x')</script>",
    "emoji family 👨‍👩‍👧‍👦 and flag 🇳🇿",
)
_CITIES = ("Auckland", "São Paulo", "Zürich", "Kraków", "東京", "Reykjavík", "Lagos", "Austin")
# Numbers as DynamoDB renders them: no trailing zeros, exponents for the extremes.
_ODD_NUMBERS = (
    "12345678901234567890123456789012345678",
    "-98765432109876543210987654321098765432",
    "0.12345678901234567890123456789012345678",
    "3.1415926535897932384626433832795028841",
    "1E+125",
    "-9.9999999999999999999999999999999999999E+125",
    "1E-130",
    "2.5E-7",
    "0",
    "-1",
    "0.000001",
    "9007199254740993",
)


@dataclass(frozen=True)
class _Plan:
    """Everything one export needs, derived from the arguments before writing."""

    bucket: str
    prefix: str
    table: str
    kind: Kind
    output_view: OutputView
    sort_key_type: SortKeyType
    seed: int
    export_id: str
    export_time: datetime
    start_time: datetime
    end_time: datetime
    window: tuple[datetime, datetime]
    table_id: str
    counts: tuple[int, ...]
    empty_files: int
    compresslevel: int

    @property
    def awsdynamodb(self) -> str:
        return f"{self.prefix}/AWSDynamoDB" if self.prefix else "AWSDynamoDB"

    @property
    def export_folder(self) -> str:
        return f"{self.awsdynamodb}/{self.export_id}"

    @property
    def data_folder(self) -> str:
        if self.kind == "full":
            return f"{self.export_folder}/data"
        return f"{self.awsdynamodb}/data"  # incremental exports share one data folder

    @property
    def table_arn(self) -> str:
        return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{self.table}"

    @property
    def export_arn(self) -> str:
        return f"{self.table_arn}/export/{self.export_id}"


@dataclass(frozen=True)
class _Pools:
    names: tuple[str, ...]
    emails: tuple[str, ...]
    skus: tuple[str, ...]
    blobs: tuple[str, ...]
    tag_sets: tuple[tuple[str, ...], ...]
    blob_sets: tuple[tuple[str, ...], ...]


def write_sample_export(
    bucket_root: Path,
    *,
    prefix: str = "exports",
    table: str = "orders",
    items: int = 1000,
    files: int = 4,
    kind: Kind = "full",
    output_view: OutputView = "NEW_AND_OLD_IMAGES",
    seed: int = 0,
    export_time: datetime | None = None,
    window: tuple[datetime, datetime] | None = None,
    empty_files: int = 0,
    sort_key_type: SortKeyType = "S",
    compresslevel: int = 6,
) -> Path:
    """Write one export under ``bucket_root`` and return the path of its manifest-summary.json.

    ``items`` is the number of data lines (items for a full export, changed items for an
    incremental one), spread unevenly over ``files`` gzip data files; ``empty_files`` more
    files stand for empty table partitions (gzip of zero bytes, ``itemCount`` 0).
    ``export_time`` is the full export's ``exportTime`` (default 2024-06-01T12:00:00Z); for an
    incremental export it is when the export ran (default: the window's end), and ``window``
    (default: the hour before ``export_time``) is ``[exportFromTime, exportToTime)``, which
    holds every write timestamp.
    ``sort_key_type`` is the table's sort key type (a key attribute has one type per table).
    Naive datetimes are taken as UTC.
    """
    plan = _make_plan(
        bucket_root=bucket_root,
        prefix=prefix,
        table=table,
        items=items,
        files=files,
        kind=kind,
        output_view=output_view,
        seed=seed,
        export_time=export_time,
        window=window,
        empty_files=empty_files,
        sort_key_type=sort_key_type,
        compresslevel=compresslevel,
    )
    root = Path(bucket_root)
    export_dir = root / plan.export_folder
    export_dir.mkdir(parents=True, exist_ok=True)
    (export_dir / "_started").write_bytes(b"")
    (root / plan.data_folder).mkdir(parents=True, exist_ok=True)

    pools = _make_pools(random.Random(f"{seed}:pools"))
    manifest_lines: list[bytes] = []
    billed = 0
    offset = 0
    for index, (name, count) in enumerate(_data_files(plan)):
        key = f"{plan.data_folder}/{name}"
        if count:
            rng = random.Random(f"{seed}:{plan.export_id}:file:{index}")
            lines = _lines(plan, pools, rng, first_item=offset, count=count)
            billed += _write_gzip_lines(root / key, lines, plan.compresslevel)
        else:  # an empty partition: a gzip object that decompresses to zero bytes
            (root / key).write_bytes(gzip.compress(b"", compresslevel=plan.compresslevel, mtime=0))
        offset += count
        md5_b64, etag = _object_checksums(root / key)
        manifest_lines.append(
            orjson.dumps(
                {"itemCount": count, "md5Checksum": md5_b64, "etag": etag, "dataFileS3Key": key}
            )
            + b"\n"
        )

    manifest_files = b"".join(manifest_lines)
    manifest_files_key = f"{plan.export_folder}/manifest-files.json"
    _write_with_md5(root / manifest_files_key, manifest_files)

    summary = orjson.dumps(_summary(plan, manifest_files_key, items=offset, billed=billed))
    summary_path = export_dir / "manifest-summary.json"
    _write_with_md5(summary_path, summary)
    return summary_path


# --- planning ---------------------------------------------------------------------------


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _make_plan(
    *,
    bucket_root: Path,
    prefix: str,
    table: str,
    items: int,
    files: int,
    kind: Kind,
    output_view: OutputView,
    seed: int,
    export_time: datetime | None,
    window: tuple[datetime, datetime] | None,
    empty_files: int,
    sort_key_type: SortKeyType,
    compresslevel: int,
) -> _Plan:
    if kind not in ("full", "incremental"):
        raise ValueError(f"kind must be 'full' or 'incremental', not {kind!r}")
    if output_view not in ("NEW_AND_OLD_IMAGES", "NEW_IMAGE"):
        raise ValueError(
            f"output_view must be NEW_AND_OLD_IMAGES or NEW_IMAGE, not {output_view!r}"
        )
    if sort_key_type not in ("S", "N"):
        raise ValueError(f"sort_key_type must be 'S' or 'N', not {sort_key_type!r}")
    if items < 0 or files < 1 or empty_files < 0:
        raise ValueError("need items >= 0, files >= 1 and empty_files >= 0")
    if items and items < files:
        raise ValueError(f"{items} items cannot fill {files} files: lower --files")
    if export_time is None and window is not None and kind == "incremental":
        export_time = window[1]  # the export runs when its window closes
    moment = _utc(export_time or DEFAULT_EXPORT_TIME)
    if window is None:
        window = (moment - timedelta(hours=1), moment)
    window = (_utc(window[0]), _utc(window[1]))
    if window[1] <= window[0]:
        raise ValueError(f"window end {window[1]} must be after its start {window[0]}")

    rng = random.Random(f"{seed}:plan:{kind}:{table}:{moment.isoformat()}")
    if kind == "full":
        start = moment
        export_moment = moment
    else:
        # An incremental export starts after its window closes.
        start = max(moment, window[1])
        export_moment = window[1]
    end = start + timedelta(
        minutes=4, seconds=rng.randrange(60, 600), milliseconds=rng.randrange(1000)
    )
    export_id = f"0{int(start.timestamp() * 1000)}-{rng.getrandbits(32):08x}"
    table_id = "-".join(f"{rng.getrandbits(bits):0{bits // 4}x}" for bits in (32, 16, 16, 16, 48))
    weights = [0.6 + 0.8 * rng.random() for _ in range(files)]
    counts = _split(items, weights)
    return _Plan(
        bucket=Path(bucket_root).resolve().name,
        prefix=prefix.strip("/"),
        table=table,
        kind=kind,
        output_view=output_view,
        sort_key_type=sort_key_type,
        seed=seed,
        export_id=export_id,
        export_time=export_moment,
        start_time=start,
        end_time=end,
        window=window,
        table_id=table_id,
        counts=counts,
        empty_files=empty_files,
        compresslevel=compresslevel,
    )


def _split(total: int, weights: Sequence[float]) -> tuple[int, ...]:
    """Split ``total`` by ``weights`` into integers that sum to ``total``, each >= 1 if possible."""
    scale = sum(weights)
    counts = [int(total * weight / scale) for weight in weights]
    for index in range(total - sum(counts)):
        counts[index % len(counts)] += 1
    if total >= len(counts):
        for index, count in enumerate(counts):
            if count == 0:  # pragma: no cover - only with absurd weights
                donor = counts.index(max(counts))
                counts[donor] -= 1
                counts[index] = 1
    return tuple(counts)


def _data_files(plan: _Plan) -> list[tuple[str, int]]:
    """(file name, item count) in manifest order; empty partitions interleaved at random.

    Names look like AWS's (26 base32 characters) and are deterministic per export, and
    unique across exports, which matters in an incremental export's shared data folder.
    """
    rng = random.Random(f"{plan.seed}:{plan.export_id}:names")
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    counts = list(plan.counts)
    for _ in range(plan.empty_files):
        counts.insert(rng.randrange(len(counts) + 1), 0)
    return [("".join(rng.choices(alphabet, k=26)) + ".json.gz", count) for count in counts]


def _make_pools(rng: random.Random) -> _Pools:
    names = tuple(f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}" for _ in range(257))
    emails = tuple(
        f"user{rng.randrange(10**6)}+{rng.choice(('shop', 'x', 'orders'))}"
        f"@{rng.choice(('example.com', 'mail.example.org', 'exämple.de'))}"
        for _ in range(509)
    )
    skus = tuple(f"SKU-{rng.randrange(36**5):06X}" for _ in range(331))
    blobs = tuple(
        base64.b64encode(rng.randbytes(rng.randrange(4, 40))).decode("ascii") for _ in range(199)
    )
    tag_sets = tuple(tuple(rng.sample(_TAGS, rng.randrange(1, 5))) for _ in range(97))
    blob_sets = tuple(
        tuple(
            base64.b64encode(rng.randbytes(rng.randrange(1, 16))).decode("ascii") for _ in range(k)
        )
        for k in (1, 2, 3)
        for _ in range(31)
    )
    return _Pools(names, emails, skus, blobs, tag_sets, blob_sets)


# --- items ------------------------------------------------------------------------------


def _dec(units: int, places: int) -> str:
    """``units / 10**places`` as DynamoDB renders a number: no trailing zeros, no ``-0``."""
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), 10**places)
    digits = f"{frac:0{places}d}".rstrip("0")
    return f"{sign}{whole}.{digits}" if digits else f"{sign}{whole}"


def _customer_ids(first_item: int, count: int, width: int) -> Iterator[tuple[str, int]]:
    """Yield (pk, item number within the customer) for ``count`` items.

    Customer slots start at ``first_item`` so files never share a customer (slots <= items);
    a bijection scrambles slot numbers so ids do not look sorted.
    """
    modulus = 10**width
    multiplier = 391_939  # coprime with every power of ten, so this is a bijection
    slot = first_item
    produced = 0
    while produced < count:
        per_customer = 1 + (slot * 2_654_435_761 >> 7) % 6
        pk = f"customer#{(slot * multiplier + 12_345) % modulus:0{width}d}"
        for n in range(min(per_customer, count - produced)):
            yield pk, n
        produced += per_customer
        slot += 1


def _item(
    rng: random.Random,
    pools: _Pools,
    pk: str,
    sk: dict[str, str],
    created_us: int,
) -> dict[str, Any]:
    r = rng.random
    created = datetime.fromtimestamp(created_us / 1e6, UTC)
    status = _STATUSES[int(r() * len(_STATUSES))]
    item: dict[str, Any] = {
        "pk": {"S": pk},
        "sk": sk,
        "status": {"S": status},
        "total": {"N": _dec(int(r() * 10_000_000), 2)},
        "version": {"N": str(1 + int(r() * 9))},
    }
    if r() < 0.5:
        customer: dict[str, Any] = {"name": {"S": pools.names[int(r() * len(pools.names))]}}
        if r() < 0.4:
            customer["email"] = {"S": pools.emails[int(r() * len(pools.emails))]}
        customer["vip"] = {"BOOL": r() < 0.1}
        item["customer"] = {"M": customer}
    if r() < 0.5:
        item["lines"] = {
            "L": [
                {
                    "M": {
                        "sku": {"S": pools.skus[int(r() * len(pools.skus))]},
                        "qty": {"N": str(1 + int(r() * 5))},
                        "price": {"N": _dec(int(r() * 20000), 2)},
                    }
                }
                for _ in range(1 + int(r() * r() * r() * 4))
            ]
        }
    # Strings shaped exactly like '%Y-%m-%dT%H:%M:%S.%f' (dynamodb-json turns them into datetimes).
    if r() < 0.5:
        item["createdAt"] = {"S": created.strftime("%Y-%m-%dT%H:%M:%S.%f")}
    else:
        item["createdAt"] = {"S": created.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"}
    if r() < 0.35:
        item["tags"] = {"SS": list(pools.tag_sets[int(r() * len(pools.tag_sets))])}
    if r() < 0.25:
        scores = {str(int(r() * 1000)), _dec(int(r() * 100_000), 3)}
        if r() < 0.3:
            scores.add(_ODD_NUMBERS[int(r() * len(_ODD_NUMBERS))])
        item["scores"] = {"NS": sorted(scores)}
    if r() < 0.2:
        item["balance"] = {"N": _ODD_NUMBERS[int(r() * len(_ODD_NUMBERS))]}
    if r() < 0.2:
        item["thumbnail"] = {"B": pools.blobs[int(r() * len(pools.blobs))]}
    if r() < 0.1:
        item["attachments"] = {"BS": list(pools.blob_sets[int(r() * len(pools.blob_sets))])}
    note = r()
    if note < 0.15:
        item["note"] = {"NULL": True}
    elif note < 0.4:
        item["note"] = {"S": _NOTES[int(r() * len(_NOTES))]}
    if r() < 0.15:
        item["shipping"] = {
            "M": {
                "city": {"S": _CITIES[int(r() * len(_CITIES))]},
                "express": {"BOOL": r() < 0.3},
                "geo": {
                    "L": [
                        {"N": _dec(int(r() * 180_000_000) - 90_000_000, 6)},
                        {"N": _dec(int(r() * 360_000_000) - 180_000_000, 6)},
                    ]
                },
            }
        }
    if r() < 0.15:
        item["discount"] = {"N": _dec(-1 - int(r() * 5000), 2)}
    return item


def _changed(rng: random.Random, item: dict[str, Any]) -> dict[str, Any]:
    """The item as it was before the window: an earlier status, total and version."""
    old = dict(item)
    old["status"] = {"S": _STATUSES[int(rng.random() * 3)]}
    old["total"] = {"N": _dec(int(rng.random() * 10_000_000), 2)}
    old["version"] = {"N": str(max(1, int(item["version"]["N"]) - 1))}
    old.pop("tags", None)
    return old


def _lines(
    plan: _Plan, pools: _Pools, rng: random.Random, *, first_item: int, count: int
) -> Iterator[bytes]:
    width = max(6, len(str(sum(plan.counts))))
    dumps = orjson.dumps
    window_start_us = int(plan.window[0].timestamp() * 1_000_000)
    window_us = int(plan.window[1].timestamp() * 1_000_000) - window_start_us
    export_us = int(plan.export_time.timestamp() * 1_000_000)
    created_span_us = 400 * 86_400 * 1_000_000
    sort_key_n = plan.sort_key_type == "N"
    full = plan.kind == "full"
    new_and_old = plan.output_view == "NEW_AND_OLD_IMAGES"
    for pk, n in _customer_ids(first_item, count, width):
        created_us = export_us - 1 - int(rng.random() * created_span_us)
        if sort_key_n:
            sk = {"N": str(created_us // 1000 * 10 + n)}
        else:
            stamp = datetime.fromtimestamp(created_us // 1_000_000, UTC).strftime("%Y-%m-%d")
            sk = {"S": f"order#{stamp}#{n:04d}"}
        item = _item(rng, pools, pk, sk, created_us)
        if full:
            yield dumps({"Item": item})
            continue
        keys = {"pk": item["pk"], "sk": sk}
        line: dict[str, Any] = {
            "Metadata": {
                "WriteTimestampMicros": {"N": str(window_start_us + int(rng.random() * window_us))}
            },
            "Keys": keys,
        }
        change = rng.random()
        if change < _INSERT_SHARE:
            line["NewImage"] = item
        elif change < _INSERT_SHARE + _DELETE_SHARE:
            if new_and_old:
                line["OldImage"] = item
        else:
            if new_and_old:
                line["OldImage"] = _changed(rng, item)
            line["NewImage"] = item
        yield dumps(line)


# --- writing ----------------------------------------------------------------------------


def _write_gzip_lines(path: Path, lines: Iterator[bytes], compresslevel: int) -> int:
    """Stream newline-terminated lines into a gzip file; return the uncompressed byte count."""
    written = 0
    batch: list[bytes] = []
    # mtime=0 keeps the gzip header, hence the md5, deterministic.
    with (
        open(path, "wb") as raw,
        gzip.GzipFile(
            filename="", mode="wb", fileobj=raw, compresslevel=compresslevel, mtime=0
        ) as out,
    ):
        for line in lines:
            batch.append(line)
            if len(batch) >= _BATCH_LINES:
                chunk = b"\n".join(batch) + b"\n"
                out.write(chunk)
                written += len(chunk)
                batch.clear()
        if batch:
            chunk = b"\n".join(batch) + b"\n"
            out.write(chunk)
            written += len(chunk)
    return written


def _object_checksums(path: Path) -> tuple[str, str]:
    """Base64 MD5 of the whole object, and its S3 multipart-upload ETag."""
    whole = hashlib.md5(usedforsecurity=False)
    parts: list[bytes] = []
    with open(path, "rb") as stream:
        while chunk := stream.read(_ETAG_PART_BYTES):
            whole.update(chunk)
            parts.append(hashlib.md5(chunk, usedforsecurity=False).digest())
    if not parts:
        parts.append(hashlib.md5(b"", usedforsecurity=False).digest())
    etag = hashlib.md5(b"".join(parts), usedforsecurity=False).hexdigest()
    return base64.b64encode(whole.digest()).decode("ascii"), f"{etag}-{len(parts)}"


def _write_with_md5(path: Path, body: bytes) -> None:
    path.write_bytes(body)
    digest = hashlib.md5(body, usedforsecurity=False).digest()
    path.with_suffix(".md5").write_bytes(base64.b64encode(digest))


def _aws_time(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _summary(plan: _Plan, manifest_files_key: str, *, items: int, billed: int) -> dict[str, Any]:
    # Field order as AWS writes it. billedSizeBytes: the uncompressed DynamoDB JSON size stands
    # in for DynamoDB's item-size accounting (nothing reads it for correctness).
    head: dict[str, Any] = {
        "version": "2020-06-30" if plan.kind == "full" else "2023-08-01",
        "exportArn": plan.export_arn,
        "startTime": _aws_time(plan.start_time),
        "endTime": _aws_time(plan.end_time),
        "tableArn": plan.table_arn,
        "tableId": plan.table_id,
    }
    if plan.kind == "full":
        head["exportTime"] = _aws_time(plan.export_time)
    else:
        head["exportFromTime"] = _aws_time(plan.window[0])
        head["exportToTime"] = _aws_time(plan.window[1])
    tail: dict[str, Any] = {
        "s3Bucket": plan.bucket,
        "s3Prefix": plan.prefix or None,
        "s3SseAlgorithm": "AES256",
        "s3SseKmsKeyId": None,
        "manifestFilesS3Key": manifest_files_key,
        "billedSizeBytes": billed,
        "itemCount": items,
        "outputFormat": "DYNAMODB_JSON",
    }
    if plan.kind == "full":
        tail["exportType"] = "FULL_EXPORT"
    else:
        tail["outputView"] = plan.output_view
        tail["exportType"] = "INCREMENTAL_EXPORT"
    return head | tail


# --- CLI --------------------------------------------------------------------------------


def _parse_time(text: str) -> datetime:
    return _utc(datetime.fromisoformat(text.replace("Z", "+00:00")))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write a sample DynamoDB PITR export (AWS's S3 layout) into OUT_DIR "
        "(the directory is the bucket root); print the manifest-summary.json path."
    )
    parser.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--kind", choices=("full", "incremental"), default="full")
    parser.add_argument(
        "--output-view", choices=("NEW_AND_OLD_IMAGES", "NEW_IMAGE"), default="NEW_AND_OLD_IMAGES"
    )
    parser.add_argument("--prefix", default="exports")
    parser.add_argument("--table", default="orders")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--empty-files", type=int, default=0)
    parser.add_argument("--sort-key-type", choices=("S", "N"), default="S")
    parser.add_argument("--compresslevel", type=int, default=6, choices=range(0, 10))
    parser.add_argument("--export-time", type=_parse_time, help="ISO 8601, e.g. 2024-06-01T12:00Z")
    parser.add_argument("--window-start", type=_parse_time, help="incremental: exportFromTime")
    parser.add_argument("--window-end", type=_parse_time, help="incremental: exportToTime")
    args = parser.parse_args(argv)
    window = None
    if args.window_start or args.window_end:
        if not (args.window_start and args.window_end):
            parser.error("give both --window-start and --window-end")
        window = (args.window_start, args.window_end)
    summary = write_sample_export(
        args.out_dir,
        prefix=args.prefix,
        table=args.table,
        items=args.items,
        files=args.files,
        kind=args.kind,
        output_view=args.output_view,
        seed=args.seed,
        export_time=args.export_time,
        window=window,
        empty_files=args.empty_files,
        sort_key_type=args.sort_key_type,
        compresslevel=args.compresslevel,
    )
    print(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
