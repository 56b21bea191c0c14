"""Where bytes live: local directories and S3 (AWS or any endpoint) behind one interface.

A location is either an ``s3://bucket/key`` URI or a local path. Both resolve to a
:class:`pyarrow.fs.FileSystem` plus a path inside it, so the reader and the writer never
branch on the store. S3 settings come from :class:`S3Options` (the Airflow side fills it
from a connection) or, when absent, from the usual AWS environment variables, with
``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``) honoured for local emulators.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from pyarrow import fs as pafs

from dynamo_lake.errors import StorageError

__all__ = ["Location", "S3Options", "resolve", "split_s3_uri"]


@dataclass(frozen=True)
class S3Options:
    """How to reach S3. ``None`` fields fall back to the AWS SDK's default chain."""

    endpoint_url: str | None = None
    region: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    session_token: str | None = None

    @classmethod
    def from_env(cls) -> S3Options:
        environ = os.environ
        return cls(
            endpoint_url=environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL"),
            region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
        )

    def filesystem(self) -> pafs.S3FileSystem:
        kwargs: dict[str, object] = {}
        if self.endpoint_url:
            parsed = urlparse(self.endpoint_url)
            kwargs["endpoint_override"] = parsed.netloc or parsed.path
            kwargs["scheme"] = parsed.scheme or "https"
            kwargs["allow_bucket_creation"] = False
        if self.region:
            kwargs["region"] = self.region
        if self.access_key and self.secret_key:
            kwargs["access_key"] = self.access_key
            kwargs["secret_key"] = self.secret_key
            if self.session_token:
                kwargs["session_token"] = self.session_token
        return pafs.S3FileSystem(**kwargs)


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b")``."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise StorageError(f"not an S3 URI: {uri!r} (expected s3://bucket/key)")
    return parsed.netloc, parsed.path.lstrip("/")


@dataclass(frozen=True)
class Location:
    """A place in a store: the filesystem, a path inside it, and how to name it to people."""

    filesystem: pafs.FileSystem
    path: str
    uri: str

    def child(self, *parts: str) -> Location:
        suffix = "/".join(part.strip("/") for part in parts if part)
        if not suffix:
            return self
        return Location(
            self.filesystem,
            f"{self.path.rstrip('/')}/{suffix}",
            f"{self.uri.rstrip('/')}/{suffix}",
        )

    @property
    def is_s3(self) -> bool:
        return self.uri.startswith("s3://")

    def exists(self) -> bool:
        info = self.filesystem.get_file_info(self.path)
        return bool(info.type != pafs.FileType.NotFound)

    def read_bytes(self) -> bytes:
        try:
            with self.filesystem.open_input_stream(self.path, compression=None) as stream:
                return bytes(stream.read())
        except FileNotFoundError:
            raise StorageError(f"{self.uri} does not exist") from None
        except OSError as exc:
            raise StorageError(f"cannot read {self.uri}: {exc}") from None

    def write_bytes(self, payload: bytes) -> None:
        """Write a whole object. On S3 a PUT appears only when complete; locally, a rename."""
        try:
            if self.is_s3:
                with self.filesystem.open_output_stream(self.path, compression=None) as stream:
                    stream.write(payload)
                return
            target = Path(self.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}")
            temporary.write_bytes(payload)
            os.replace(temporary, target)
        except OSError as exc:
            raise StorageError(f"cannot write {self.uri}: {exc}") from None


def resolve(location: str, s3: S3Options | None = None) -> Location:
    """Resolve an ``s3://`` URI or a local path to a :class:`Location`."""
    if location.startswith("s3://"):
        bucket, key = split_s3_uri(location)
        options = s3 or S3Options.from_env()
        return Location(options.filesystem(), f"{bucket}/{key}".rstrip("/"), location.rstrip("/"))
    if "://" in location:
        raise StorageError(f"unsupported location {location!r}: use s3://bucket/key or a path")
    path = str(Path(location).expanduser().resolve())
    return Location(pafs.LocalFileSystem(), path, path)
