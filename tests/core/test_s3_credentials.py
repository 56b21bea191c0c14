"""S3 credentials that expire while work is in flight: the store signs with keys that
refresh, never with a frozen copy. The local AWS stack accepts any key, so a fault proxy
in front of it answers ``ExpiredToken`` for the old key once it has expired, as S3 does."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.credentials import RefreshableCredentials

from dynamo_lake.errors import StorageError
from dynamo_lake.storage import S3Options, S3Store, resolve
from local_aws.fault_proxy import FaultProxy, FaultRule
from local_aws.server import LocalAwsControl


def _metadata(key: str, lifetime: timedelta) -> dict[str, str]:
    return {
        "access_key": key,
        "secret_key": f"{key}-secret",
        "token": f"{key}-token",
        "expiry_time": (datetime.now(UTC) + lifetime).isoformat(),
    }


def _rotating_credentials() -> Any:
    """K1, which botocore wants refreshed two seconds from now (15 min before its expiry,
    its advisory window), then K2 for an hour."""
    return RefreshableCredentials.create_from_metadata(
        metadata=_metadata("K1", timedelta(minutes=15, seconds=2)),
        refresh_using=lambda: _metadata("K2", timedelta(hours=1)),
        method="rotating-test",
    )


@pytest.fixture
def bucket(local_aws: LocalAwsControl) -> str:
    name = f"creds-{int(time.time() * 1000)}"
    local_aws.client("s3", max_attempts=3).create_bucket(Bucket=name)
    return name


def _write_after_k1_expired(options: S3Options, proxy: FaultProxy, bucket: str) -> None:
    location = resolve(f"s3://{bucket}/lake", options)
    if isinstance(location.store, S3Store):
        location.store.CHECK_SECONDS = 0.1  # type: ignore[misc]
    location.child("before.txt").write_bytes(b"signed with K1")
    time.sleep(2.5)  # K1 is now due for refresh; S3 refuses it from here on
    proxy.rule = FaultRule(rate=1.0, error="ExpiredToken", access_keys=frozenset({"K1"}))
    location.child("after.txt").write_bytes(b"signed with K2")


def test_a_long_write_outlives_the_credentials_it_started_with(
    local_aws: LocalAwsControl, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DYNAMO_LAKE_S3_MAX_ATTEMPTS", "2")
    with FaultProxy(local_aws.endpoint_url) as proxy:
        options = S3Options(
            endpoint_url=proxy.endpoint_url, region="us-east-1", credentials=_rotating_credentials()
        )
        _write_after_k1_expired(options, proxy, bucket)
        assert proxy.counts["failed"] == 0
    s3 = local_aws.client("s3")
    assert s3.get_object(Bucket=bucket, Key="lake/after.txt")["Body"].read() == b"signed with K2"


def test_a_frozen_copy_of_the_same_credentials_fails_once_they_expire(
    local_aws: LocalAwsControl, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What copying get_credentials() into pyarrow did: the write after expiry is refused."""
    monkeypatch.setenv("DYNAMO_LAKE_S3_MAX_ATTEMPTS", "2")
    frozen = _rotating_credentials().get_frozen_credentials()
    with FaultProxy(local_aws.endpoint_url) as proxy:
        options = S3Options(
            endpoint_url=proxy.endpoint_url,
            region="us-east-1",
            access_key=frozen.access_key,
            secret_key=frozen.secret_key,
            session_token=frozen.token,
        )
        with pytest.raises(StorageError, match="ExpiredToken|expired"):
            _write_after_k1_expired(options, proxy, bucket)


def test_secrets_never_show_in_a_repr() -> None:
    options = S3Options(
        endpoint_url="http://127.0.0.1:1",
        access_key="AKIAVISIBLE",
        secret_key="very-secret-value",
        session_token="session-token-value",
        credentials=_rotating_credentials(),
    )
    location = resolve("s3://some-bucket/x", options)
    for text in (repr(options), repr(location), str(options)):
        assert "very-secret-value" not in text and "session-token-value" not in text
        assert "K1-secret" not in text and "K1-token" not in text


def test_an_assume_role_connection_gives_refreshing_credentials(
    local_aws: LocalAwsControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dynamo_lake.airflow.connections import s3_options

    extra = {
        "region_name": "us-east-1",
        "endpoint_url": local_aws.endpoint_url,
        "role_arn": "arn:aws:iam::123456789012:role/dynamo-lake-airflow",
        "service_config": {"sts": {"endpoint_url": local_aws.endpoint_url}},
    }
    monkeypatch.setenv(
        "AIRFLOW_CONN_ASSUMED",
        json.dumps({"conn_type": "aws", "login": "testing", "password": "testing", "extra": extra}),
    )
    options = s3_options("assumed", "us-east-1")
    assert options.access_key is None and options.secret_key is None  # nothing frozen
    assert isinstance(options.credentials, RefreshableCredentials)
    keys = options.current_keys()
    assert keys is not None and keys[0] != "testing"  # the role's keys (from STS), not the user's
    assert keys[2]  # temporary credentials carry a session token
    assert "testing" not in repr(options)
