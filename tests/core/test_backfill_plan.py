"""Planning a backfill (pure), then checking the source and starting exports against the
local AWS stack over HTTP (moto plus our export model; see dev/local_aws/README.md)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest
from botocore.loaders import Loader
from botocore.model import ServiceModel
from botocore.validate import ParamValidator
from hypothesis import given, settings
from hypothesis import strategies as st

from dynamo_lake.backfill import plan_backfill
from dynamo_lake.config import TableConfig
from dynamo_lake.errors import (
    ExportFailedError,
    ExportWindowError,
    PitrUnavailableError,
    SourceError,
)
from dynamo_lake.exports.api import ExportRequest, start_export
from dynamo_lake.exports.planning import PitrWindow, check_source, client_token, split_window
from local_aws.seed import create_small_table
from local_aws.server import LocalAwsControl

DAY = timedelta(hours=24)
MIN = timedelta(minutes=15)
ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/orders"
EARLIEST = datetime(2024, 5, 1, tzinfo=UTC)
LATEST = datetime(2024, 6, 1, 11, 59, 30, 123000, tzinfo=UTC)
WINDOW = PitrWindow(EARLIEST, LATEST)


def _dynamodb_model() -> ServiceModel:
    loader = Loader()
    return ServiceModel(loader.load_service_model("dynamodb", "service-2"), "dynamodb")


def _config(**changes: Any) -> TableConfig:
    values: dict[str, Any] = {
        "name": "orders",
        "dynamodb_table": "orders",
        "export_bucket": "acme-ddb-exports",
        "export_prefix": "exports/orders/",
        "lake_bucket": "acme-lake",
        "glue_database": "shop",
        "glue_table": "orders",
        "region": "us-east-1",
    }
    values.update(changes)
    return TableConfig(**values)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


# --- split_window ----------------------------------------------------------------------


def _check_parts(start: datetime, end: datetime, parts: list[tuple[datetime, datetime]]) -> None:
    assert parts[0][0] == start
    assert parts[-1][1] == end
    for (_, first_end), (second_start, _) in pairwise(parts):
        assert first_end == second_start  # consecutive: no gap, no overlap
    lengths = [b - a for a, b in parts]
    assert all(length <= DAY for length in lengths), lengths
    assert all(length > timedelta(0) for length in lengths), lengths
    # Near-equal: no part more than a second longer than another (whole-second bounds).
    assert max(lengths) - min(lengths) <= timedelta(seconds=1), lengths
    if end - start >= MIN:
        assert all(length >= MIN for length in lengths), lengths


@pytest.mark.parametrize(
    ("length", "expected_parts"),
    [
        (MIN, 1),
        (timedelta(hours=3), 1),
        (DAY, 1),
        (DAY + timedelta(seconds=1), 2),
        (DAY + MIN, 2),
        (2 * DAY, 2),
        (2 * DAY + timedelta(minutes=1), 3),
        (timedelta(days=10), 10),
    ],
)
def test_split_window_examples(length: timedelta, expected_parts: int) -> None:
    start = datetime(2024, 6, 1, 8, 30, tzinfo=UTC)

    parts = split_window(start, start + length)

    assert len(parts) == expected_parts
    _check_parts(start, start + length, parts)


def test_split_window_avoids_a_short_remainder() -> None:
    # 24 h + 1 min as "24 h then 1 min" would leave a part under DynamoDB's 15-minute minimum.
    start = datetime(2024, 6, 1, tzinfo=UTC)

    parts = split_window(start, start + DAY + timedelta(minutes=1))

    assert [b - a for a, b in parts] == [timedelta(hours=12, seconds=30)] * 2


@settings(max_examples=300, deadline=None)
@given(
    start=st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
    ),
    seconds=st.integers(min_value=int(MIN.total_seconds()), max_value=10 * 24 * 3600),
)
def test_split_window_property(start: datetime, seconds: int) -> None:
    """Whole-second window lengths, any start (microseconds included); sub-second lengths
    have their own (failing) test below."""
    end = start + timedelta(seconds=seconds)

    parts = split_window(start, end)

    assert len(parts) == -(-seconds // 86400)  # the fewest parts of at most 24 h
    _check_parts(start, end, parts)


def test_split_window_sub_second_total_keeps_every_part_within_24_hours() -> None:
    # Realistic: export_to defaults to LatestRestorableDateTime, which has milliseconds.
    start = datetime(2024, 6, 1, tzinfo=UTC)
    end = start + 2 * DAY - timedelta(milliseconds=500)

    parts = split_window(start, end)

    assert all(b - a <= DAY for a, b in parts), [b - a for a, b in parts]


# --- client_token ----------------------------------------------------------------------


def test_client_token_is_deterministic_and_input_sensitive() -> None:
    token = client_token("manual__2024-06-01", "orders", ARN, "full", "2024-06-01T00:00:00Z")

    assert token == client_token(
        "manual__2024-06-01", "orders", ARN, "full", "2024-06-01T00:00:00Z"
    )
    others = {
        client_token("manual__2024-06-02", "orders", ARN, "full", "2024-06-01T00:00:00Z"),
        client_token("manual__2024-06-01", "users", ARN, "full", "2024-06-01T00:00:00Z"),
        client_token("manual__2024-06-01", "orders", ARN, "full", "2024-06-01T00:00:01Z"),
        client_token("manual__2024-06-01", "orders", ARN, "incremental", "2024-06-01T00:00:00Z"),
        # Joining must not be ambiguous: ("ab", "c") is not ("a", "bc").
        client_token("manual__2024-06-01orders", "", ARN, "full", "2024-06-01T00:00:00Z"),
    }
    assert token not in others
    assert len(others) == 5


def test_client_token_fits_the_dynamodb_api() -> None:
    shape = _dynamodb_model().operation_model("ExportTableToPointInTime").input_shape
    token_shape = shape.members["ClientToken"]
    token = client_token("run", "orders", ARN, "full", "2024-06-01T00:00:00Z")

    # The model constrains ClientToken by pattern only (no min/max length in botocore's
    # service-2.json); 64 characters is the limit AWS documents for idempotency tokens.
    assert token_shape.metadata.get("pattern") == "^[^\\$]+$"
    assert 1 <= len(token) <= 64
    assert "$" not in token
    assert token_shape.metadata.get("max", 64) >= len(token)


# --- plan_backfill ---------------------------------------------------------------------


def test_full_export_defaults_to_the_latest_restorable_time() -> None:
    plan = plan_backfill(_config(), ARN, WINDOW, mode="full", run_key="manual__1")

    (request,) = plan.exports
    assert request.mode == "full"
    assert datetime.fromisoformat(request.export_time or "") == LATEST
    assert any("latest restorable time" in note for note in plan.notes)
    assert request.bucket == "acme-ddb-exports"
    assert request.prefix == "exports/orders/manual__1"
    assert request.table_arn == ARN
    assert plan.lake_uri == "s3://acme-lake/dynamo-cdc/shop/orders"
    assert plan.pitr_window == WINDOW.describe()
    assert plan.compression == "zstd"


def test_full_export_at_an_explicit_time_inside_the_window() -> None:
    plan = plan_backfill(
        _config(compression="gzip"),
        ARN,
        WINDOW,
        mode="full",
        run_key="manual__1",
        export_time="2024-05-20T06:00:00Z",
        compression="snappy",
    )

    (request,) = plan.exports
    assert datetime.fromisoformat(request.export_time or "") == datetime(2024, 5, 20, 6, tzinfo=UTC)
    assert plan.notes == ()
    assert plan.compression == "snappy"  # the run's choice beats the table's


@pytest.mark.parametrize(
    "export_time", ["2024-04-30T23:59:59Z", "2024-06-01T12:00:00Z", "2025-01-01T00:00:00+02:00"]
)
def test_full_export_outside_the_window_names_the_window(export_time: str) -> None:
    with pytest.raises(ExportWindowError) as caught:
        plan_backfill(_config(), ARN, WINDOW, mode="full", run_key="r", export_time=export_time)

    message = str(caught.value)
    assert "outside the table's point-in-time window" in message
    assert WINDOW.describe() in message
    assert "2024-05-01T00:00:00Z" in message


def test_full_export_rejects_an_unparseable_time() -> None:
    with pytest.raises(ExportWindowError, match="not an ISO-8601 time"):
        plan_backfill(_config(), ARN, WINDOW, mode="full", run_key="r", export_time="yesterday")


def test_full_export_rejects_incremental_bounds() -> None:
    with pytest.raises(ExportWindowError, match="for mode 'incremental'"):
        plan_backfill(
            _config(), ARN, WINDOW, mode="full", run_key="r", export_from="2024-05-20T00:00:00Z"
        )


def test_incremental_needs_export_from() -> None:
    with pytest.raises(ExportWindowError, match="needs export_from"):
        plan_backfill(
            _config(), ARN, WINDOW, mode="incremental", run_key="r", export_to="2024-05-20T00:00Z"
        )


def test_incremental_rejects_export_time() -> None:
    with pytest.raises(ExportWindowError, match="export_time is for mode 'full'"):
        plan_backfill(
            _config(),
            ARN,
            WINDOW,
            mode="incremental",
            run_key="r",
            export_time="2024-05-20T00:00:00Z",
            export_from="2024-05-20T00:00:00Z",
        )


def _incremental(export_from: str | None, export_to: str | None) -> Any:
    return plan_backfill(
        _config(),
        ARN,
        WINDOW,
        mode="incremental",
        run_key="r",
        export_from=export_from,
        export_to=export_to,
    )


def test_incremental_window_shorter_than_15_minutes() -> None:
    with pytest.raises(ExportWindowError, match="shorter than DynamoDB's 15-minute minimum"):
        _incremental("2024-05-20T00:00:00Z", "2024-05-20T00:14:59Z")


@pytest.mark.parametrize(
    ("export_from", "export_to", "expected"),
    [
        # Reversed bounds are a swap, not a short window.
        ("2024-05-20T01:00:00Z", "2024-05-20T00:00:00Z", "is after export_to .* swap them"),
        ("2024-05-20T00:00:00Z", "2024-05-20T00:00:00Z", "both 2024-05-20T00:00:00Z: .* empty"),
        # A start after the latest restorable time with no end: the window would be empty.
        ("2024-06-02T00:00:00Z", None, "not before the latest restorable time .* earlier start"),
    ],
)
def test_incremental_bounds_in_the_wrong_order_name_the_real_problem(
    export_from: str, export_to: str | None, expected: str
) -> None:
    with pytest.raises(ExportWindowError, match=expected) as caught:
        _incremental(export_from, export_to)
    assert "15-minute" not in str(caught.value)


@pytest.mark.parametrize(
    "export_time",
    [
        "9999-12-31T23:59:59-14:00",  # beyond datetime's range once in UTC (OverflowError)
        "0001-01-01T00:00:00+14:00",
        "1970-01-01T00:00:00Z",
        "2200-01-01T00:00:00Z",
    ],
)
def test_absurd_years_are_refused_in_plain_words(export_time: str) -> None:
    with pytest.raises(ExportWindowError, match="outside 2012-2099 .* check the year"):
        plan_backfill(_config(), ARN, WINDOW, mode="full", run_key="r", export_time=export_time)


def test_a_lowercase_rfc3339_time_is_accepted() -> None:
    # The trigger form's "date-time" format is RFC 3339, which allows a lowercase t and z.
    plan = plan_backfill(
        _config(), ARN, WINDOW, mode="full", run_key="r", export_time="2024-05-20t02:30:00z"
    )
    assert plan.exports[0].export_time == "2024-05-20T02:30:00+00:00"


@pytest.mark.parametrize(
    ("export_from", "export_to"),
    [
        ("2024-04-30T23:00:00Z", "2024-05-01T01:00:00Z"),  # starts before the earliest time
        ("2024-06-01T00:00:00Z", "2024-06-01T12:00:00Z"),  # ends after the latest time
    ],
)
def test_incremental_window_outside_pitr(export_from: str, export_to: str) -> None:
    with pytest.raises(ExportWindowError) as caught:
        plan_backfill(
            _config(),
            ARN,
            WINDOW,
            mode="incremental",
            run_key="r",
            export_from=export_from,
            export_to=export_to,
        )

    assert "outside the table's point-in-time window" in str(caught.value)
    assert WINDOW.describe() in str(caught.value)


def test_unknown_mode() -> None:
    with pytest.raises(ExportWindowError, match="mode must be 'full' or 'incremental'"):
        plan_backfill(_config(), ARN, WINDOW, mode="differential", run_key="r")


def test_incremental_over_24_hours_is_split_into_consecutive_exports() -> None:
    start = datetime(2024, 5, 10, 6, tzinfo=UTC)
    end = start + timedelta(hours=60)

    plan = plan_backfill(
        _config(),
        ARN,
        WINDOW,
        mode="incremental",
        run_key="scheduled__2024-05-12",
        export_from=_iso(start),
        export_to=_iso(end),
    )

    assert len(plan.exports) == 3
    assert [request.sequence for request in plan.exports] == [0, 1, 2]
    assert all(request.mode == "incremental" for request in plan.exports)
    assert len({request.client_token for request in plan.exports}) == 3
    bounds = [
        (datetime.fromisoformat(r.export_from or ""), datetime.fromisoformat(r.export_to or ""))
        for r in plan.exports
    ]
    assert bounds[0][0] == start
    assert bounds[-1][1] == end
    assert all(a[1] == b[0] for a, b in pairwise(bounds))
    assert all(b - a == timedelta(hours=20) for a, b in bounds)
    assert any("split into 3 exports" in note for note in plan.notes)
    # All of a run's exports share the run's prefix.
    assert {request.prefix for request in plan.exports} == {"exports/orders/scheduled__2024-05-12"}


def test_incremental_export_to_defaults_to_the_latest_restorable_time() -> None:
    plan = plan_backfill(
        _config(),
        ARN,
        WINDOW,
        mode="incremental",
        run_key="r",
        export_from=_iso(LATEST - timedelta(hours=2)),
    )

    (request,) = plan.exports
    assert datetime.fromisoformat(request.export_to or "") == LATEST
    assert any("export_to not given" in note for note in plan.notes)


def _incremental_plan(run_key: str) -> Any:
    return plan_backfill(
        _config(),
        ARN,
        WINDOW,
        mode="incremental",
        run_key=run_key,
        export_from="2024-05-10T00:00:00Z",
        export_to="2024-05-12T00:00:00Z",
    )


def test_the_same_inputs_plan_the_same_tokens() -> None:
    first, again = _incremental_plan("manual__a"), _incremental_plan("manual__a")

    assert first == again
    assert [r.client_token for r in first.exports] == [r.client_token for r in again.exports]
    full = plan_backfill(_config(), ARN, WINDOW, mode="full", run_key="manual__a")
    assert full == plan_backfill(_config(), ARN, WINDOW, mode="full", run_key="manual__a")


def test_another_run_key_gives_other_tokens() -> None:
    first, other = _incremental_plan("manual__a"), _incremental_plan("manual__b")

    assert not {r.client_token for r in first.exports} & {r.client_token for r in other.exports}
    full_a = plan_backfill(_config(), ARN, WINDOW, mode="full", run_key="manual__a")
    full_b = plan_backfill(_config(), ARN, WINDOW, mode="full", run_key="manual__b")
    assert full_a.exports[0].client_token != full_b.exports[0].client_token


def test_run_key_is_made_safe_for_the_export_prefix() -> None:
    plan = plan_backfill(
        _config(), ARN, WINDOW, mode="full", run_key="manual__2024-06-01T10:00:00+00:00"
    )

    assert plan.exports[0].prefix == "exports/orders/manual__2024-06-01T10_00_00_00_00"


def test_plan_round_trips_through_json() -> None:
    plan = _incremental_plan("manual__a")

    restored = [ExportRequest.from_json(raw) for raw in plan.to_json()["exports"]]

    assert tuple(restored) == plan.exports


# --- ExportRequest.api_arguments --------------------------------------------------------


def _validate_against_model(arguments: dict[str, Any]) -> None:
    shape = _dynamodb_model().operation_model("ExportTableToPointInTime").input_shape
    report = ParamValidator().validate(arguments, shape)
    assert not report.has_errors(), report.generate_report()


def test_full_export_api_arguments() -> None:
    request = plan_backfill(
        _config(), ARN, WINDOW, mode="full", run_key="r", export_time="2024-05-20T06:00:00Z"
    ).exports[0]

    arguments = request.api_arguments()

    assert arguments == {
        "TableArn": ARN,
        "S3Bucket": "acme-ddb-exports",
        "S3Prefix": "exports/orders/r",
        "ClientToken": request.client_token,
        "ExportFormat": "DYNAMODB_JSON",
        "ExportType": "FULL_EXPORT",
        "ExportTime": datetime(2024, 5, 20, 6, tzinfo=UTC),
    }
    _validate_against_model(arguments)


def test_incremental_export_api_arguments_with_kms() -> None:
    key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    request = plan_backfill(
        _config(kms_key_id=key),
        ARN,
        WINDOW,
        mode="incremental",
        run_key="r",
        export_from="2024-05-20T00:00:00Z",
        export_to="2024-05-20T01:00:00Z",
    ).exports[0]

    arguments = request.api_arguments()

    assert arguments["ExportType"] == "INCREMENTAL_EXPORT"
    assert "ExportTime" not in arguments
    assert arguments["IncrementalExportSpecification"] == {
        "ExportFromTime": datetime(2024, 5, 20, tzinfo=UTC),
        "ExportToTime": datetime(2024, 5, 20, 1, tzinfo=UTC),
        "ExportViewType": "NEW_AND_OLD_IMAGES",
    }
    assert (arguments["S3SseAlgorithm"], arguments["S3SseKmsKeyId"]) == ("KMS", key)
    _validate_against_model(arguments)


def test_no_kms_arguments_without_a_key() -> None:
    arguments = (
        plan_backfill(_config(), ARN, WINDOW, mode="full", run_key="r").exports[0].api_arguments()
    )

    assert "S3SseAlgorithm" not in arguments
    assert "S3SseKmsKeyId" not in arguments


# --- against the local AWS stack over HTTP ---------------------------------------------


def _bucket(s3: Any) -> str:
    name = f"bf-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def aws(emulator: LocalAwsControl) -> tuple[Any, Any]:
    return emulator.client("dynamodb"), emulator.client("s3")


def test_check_source_returns_the_arn_and_pitr_window(
    emulator: LocalAwsControl, aws: tuple[Any, Any]
) -> None:
    dynamodb, s3 = aws
    t0 = datetime(2024, 6, 1, 9, tzinfo=UTC)
    emulator.set_clock(t0)
    table, arn = create_small_table(dynamodb)
    emulator.set_clock(t0 + timedelta(hours=2))
    config = _config(dynamodb_table=table, export_bucket=_bucket(s3), lake_bucket=_bucket(s3))

    table_arn, window = check_source(dynamodb, s3, config)

    assert table_arn == arn
    assert window.earliest == t0
    assert t0 + timedelta(hours=1) < window.latest <= t0 + timedelta(hours=2)


def test_check_source_missing_table(aws: tuple[Any, Any]) -> None:
    dynamodb, s3 = aws
    config = _config(dynamodb_table=f"absent-{uuid.uuid4().hex[:8]}")

    with pytest.raises(SourceError) as caught:
        check_source(dynamodb, s3, config)

    message = str(caught.value)
    assert config.dynamodb_table in message
    assert "does not exist" in message
    assert "us-east-1" in message


def test_check_source_pitr_off(aws: tuple[Any, Any]) -> None:
    dynamodb, s3 = aws
    table, _ = create_small_table(dynamodb, pitr=False)
    config = _config(dynamodb_table=table, export_bucket=_bucket(s3), lake_bucket=_bucket(s3))

    with pytest.raises(PitrUnavailableError) as caught:
        check_source(dynamodb, s3, config)

    message = str(caught.value)
    assert "update-continuous-backups" in message
    assert f"--table-name {table}" in message


@pytest.mark.parametrize("role", ["export_bucket", "lake_bucket"])
def test_check_source_missing_bucket(aws: tuple[Any, Any], role: str) -> None:
    dynamodb, s3 = aws
    table, _ = create_small_table(dynamodb)
    buckets = {"export_bucket": _bucket(s3), "lake_bucket": _bucket(s3)}
    buckets[role] = f"absent-{uuid.uuid4().hex[:8]}"
    config = _config(dynamodb_table=table, **buckets)

    with pytest.raises(SourceError) as caught:
        check_source(dynamodb, s3, config)

    message = str(caught.value)
    assert repr(buckets[role]) in message
    assert role in message
    assert "does not exist" in message


def _full_export_request(emulator: LocalAwsControl, dynamodb: Any, s3: Any) -> ExportRequest:
    t0 = datetime(2024, 6, 1, 9, tzinfo=UTC)
    emulator.set_clock(t0)
    table, _ = create_small_table(dynamodb)
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "a"}, "sk": {"N": "1"}})
    emulator.set_clock(t0 + timedelta(hours=1))
    config = _config(dynamodb_table=table, export_bucket=_bucket(s3), lake_bucket=_bucket(s3))
    table_arn, window = check_source(dynamodb, s3, config)
    plan = plan_backfill(
        config,
        table_arn,
        window,
        mode="full",
        run_key=f"manual__{uuid.uuid4().hex[:6]}",
        export_time=_iso(t0 + timedelta(minutes=30)),
    )
    return plan.exports[0]


def test_start_export_twice_attaches_to_the_same_export(
    emulator: LocalAwsControl, aws: tuple[Any, Any]
) -> None:
    dynamodb, s3 = aws
    request = _full_export_request(emulator, dynamodb, s3)

    first = start_export(dynamodb, request)
    again = start_export(dynamodb, request)

    assert first == again
    assert first.startswith(f"{request.table_arn}/export/")
    listed = dynamodb.list_exports(TableArn=request.table_arn)["ExportSummaries"]
    assert [summary["ExportArn"] for summary in listed] == [first]
    described = dynamodb.describe_export(ExportArn=first)["ExportDescription"]
    assert described["ClientToken"] == request.client_token
    assert described["S3Prefix"] == request.prefix


def test_same_token_with_another_export_time_is_a_conflict(
    emulator: LocalAwsControl, aws: tuple[Any, Any]
) -> None:
    dynamodb, s3 = aws
    request = _full_export_request(emulator, dynamodb, s3)
    start_export(dynamodb, request)
    moved = datetime.fromisoformat(request.export_time or "") + timedelta(minutes=5)
    changed = replace(request, export_time=moved.isoformat())

    with pytest.raises(ExportFailedError) as caught:
        start_export(dynamodb, changed)

    message = str(caught.value)
    assert "ExportConflictException" in message
    assert request.client_token in message
    assert len(dynamodb.list_exports(TableArn=request.table_arn)["ExportSummaries"]) == 1


def test_start_export_outside_the_window_is_an_export_window_error(
    emulator: LocalAwsControl, aws: tuple[Any, Any]
) -> None:
    dynamodb, s3 = aws
    request = _full_export_request(emulator, dynamodb, s3)
    # A request planned elsewhere (or long ago) for a time before PITR was enabled.
    early = replace(request, export_time="2024-06-01T08:00:00+00:00", client_token="early")

    with pytest.raises(ExportWindowError) as caught:
        start_export(dynamodb, early)

    assert "full export of" in str(caught.value)


def test_planned_incremental_exports_never_exceed_24_hours() -> None:
    window = PitrWindow(EARLIEST, datetime(2024, 6, 1, 11, 59, 59, 500000, tzinfo=UTC))

    plan = plan_backfill(
        _config(),
        ARN,
        window,
        mode="incremental",
        run_key="r",
        export_from="2024-05-30T12:00:00Z",
    )

    lengths = [
        datetime.fromisoformat(r.export_to or "") - datetime.fromisoformat(r.export_from or "")
        for r in plan.exports
    ]
    assert all(length <= DAY for length in lengths), lengths
