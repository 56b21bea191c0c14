"""AWS clients and S3 settings from an Airflow AWS connection."""

from __future__ import annotations

from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

from dynamo_lake.storage import S3Options


def aws_client(service: str, aws_conn_id: str | None, region: str | None) -> Any:
    return AwsBaseHook(aws_conn_id=aws_conn_id, client_type=service, region_name=region).conn


def s3_options(aws_conn_id: str | None, region: str | None) -> S3Options:
    """What pyarrow's S3 filesystem needs, taken from the connection (endpoint included)."""
    hook = AwsBaseHook(aws_conn_id=aws_conn_id, client_type="s3", region_name=region)
    credentials = hook.get_credentials()
    return S3Options(
        endpoint_url=hook.conn_config.get_service_endpoint_url("s3"),
        region=hook.conn_region_name,
        access_key=credentials.access_key,
        secret_key=credentials.secret_key,
        session_token=credentials.token,
    )
