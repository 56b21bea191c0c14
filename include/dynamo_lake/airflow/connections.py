"""AWS access from an Airflow AWS connection: boto3 clients, and S3 settings for pyarrow.

pyarrow's S3 filesystem copies the keys it is given. Temporary credentials (an assumed
role, web identity, an instance profile) expire, often within the hour, so S3 settings
carry the connection session's own credentials object, which botocore refreshes; the core
(:class:`dynamo_lake.storage.S3Store`) makes a new filesystem when the keys change. Static
keys stay static only where the connection has static keys.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

if TYPE_CHECKING:  # storage loads pyarrow; the triggerer uses aws_client only
    from dynamo_lake.storage import S3Options

__all__ = ["aws_client", "s3_options"]


def aws_client(service: str, aws_conn_id: str | None, region: str | None) -> Any:
    """A boto3 client for ``service`` from the connection (its retries, endpoint, identity)."""
    return AwsBaseHook(aws_conn_id=aws_conn_id, client_type=service, region_name=region).conn


def s3_options(aws_conn_id: str | None, region: str | None) -> S3Options:
    """What the core's S3 store needs from the connection: endpoint, region, and the
    session's credentials (refreshing, never a frozen copy)."""
    from dynamo_lake.storage import S3Options

    hook = AwsBaseHook(aws_conn_id=aws_conn_id, client_type="s3", region_name=region)
    session = hook.get_session(region_name=region)
    return S3Options(
        endpoint_url=hook.conn_config.get_service_endpoint_url("s3"),
        region=hook.conn_region_name,
        credentials=session.get_credentials(),
    )
