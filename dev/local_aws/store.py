"""The S3 side of exports: objects written into the stack's own S3 through boto3 over loopback."""

from __future__ import annotations

import threading
from typing import Any

from botocore.exceptions import ClientError


class Boto3ObjectStore:
    """`ObjectStore` over the stack's own endpoint (set once the server has its port)."""

    def __init__(self, endpoint_url: str | None = None) -> None:
        self.endpoint_url = endpoint_url
        self._client: Any = None
        self._lock = threading.Lock()

    def _s3(self) -> Any:
        with self._lock:
            if self._client is None:
                import boto3
                from botocore.config import Config

                if self.endpoint_url is None:
                    raise RuntimeError("the object store has no endpoint yet")
                self._client = boto3.client(
                    "s3",
                    endpoint_url=self.endpoint_url,
                    region_name="us-east-1",
                    aws_access_key_id="testing",
                    aws_secret_access_key="testing",
                    config=Config(retries={"max_attempts": 3, "mode": "standard"}),
                )
            return self._client

    def bucket_exists(self, bucket: str) -> bool:
        try:
            self._s3().head_bucket(Bucket=bucket)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket"):
                return False
            raise
        return True

    def put_object(self, bucket: str, key: str, body: bytes) -> str:
        response = self._s3().put_object(Bucket=bucket, Key=key, Body=body)
        return str(response["ETag"]).strip('"')
