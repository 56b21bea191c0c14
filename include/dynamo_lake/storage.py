"""Where bytes live: local directories and S3 (AWS or any endpoint) behind one interface.

A location is either an ``s3://bucket/key`` URI or a local path. Both resolve to a
:class:`pyarrow.fs.FileSystem` plus a path inside it, so the reader and the writer never
branch on the store. S3 settings come from :class:`S3Options` (the Airflow side fills it
from a connection) or, when absent, from the usual AWS environment variables, with
``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``) honoured for local emulators.

Every S3 request is retried with the SDK's standard mode (exponential backoff with jitter)
so throttling (503 SlowDown) and 500s are ridden out; what still fails becomes a
:class:`StorageError` naming the object, never a raw ``OSError``.

:func:`acquire_lease` is the one mutual-exclusion primitive (a publish holds one per
group): an S3 object created with a conditional write (``If-None-Match: *``, taken over
from an expired holder with ``If-Match``), or a local file locked with ``flock``, which the
kernel releases when its process dies.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import orjson
from pyarrow import fs as pafs

from dynamo_lake.contract import valid_bucket_name
from dynamo_lake.errors import LeaseHeldError, StorageError, UnreadableRecordError

_Parsed = TypeVar("_Parsed")

__all__ = [
    "S3_MAX_ATTEMPTS",
    "Lease",
    "LocalStore",
    "Location",
    "S3Options",
    "S3Store",
    "Store",
    "acquire_lease",
    "resolve",
    "split_s3_uri",
]

#: Attempts per S3 request (the SDK's standard retry mode: exponential backoff with jitter,
#: capped at 20 s a wait), enough to ride out sustained throttling without hanging forever.
#: ``DYNAMO_LAKE_S3_MAX_ATTEMPTS`` overrides it.
S3_MAX_ATTEMPTS = 10


def s3_max_attempts() -> int:
    configured = os.environ.get("DYNAMO_LAKE_S3_MAX_ATTEMPTS", "")
    return int(configured) if configured.isdigit() and int(configured) > 0 else S3_MAX_ATTEMPTS


@dataclass(frozen=True)
class S3Options:
    """How to reach S3: an endpoint, a region, and an identity.

    The identity is one of: ``credentials``, a botocore credentials object that refreshes
    itself (an Airflow connection's session: assumed roles, web identity, instance
    profiles), asked for current keys before they run out; static keys, only where the
    connection has static keys; or nothing, and the AWS SDK's default chain (which refreshes
    on its own). Secrets never appear in a repr.
    """

    endpoint_url: str | None = None
    region: str | None = None
    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    credentials: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def from_env(cls) -> S3Options:
        environ = os.environ
        return cls(
            endpoint_url=environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL"),
            region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
        )

    def current_keys(self) -> tuple[str, str, str | None] | None:
        """The keys to sign with now (refreshed by botocore when due), or None: the chain."""
        if self.credentials is not None:
            frozen = self.credentials.get_frozen_credentials()
            return frozen.access_key, frozen.secret_key, frozen.token
        if self.access_key and self.secret_key:
            return self.access_key, self.secret_key, self.session_token
        return None

    def filesystem(self, keys: tuple[str, str, str | None] | None = None) -> pafs.S3FileSystem:
        """A pyarrow S3 filesystem signing with ``keys`` (default: :meth:`current_keys`)."""
        kwargs: dict[str, object] = {
            "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=s3_max_attempts())
        }
        if self.endpoint_url:
            parsed = urlparse(self.endpoint_url)
            kwargs["endpoint_override"] = parsed.netloc or parsed.path
            kwargs["scheme"] = parsed.scheme or "https"
            kwargs["allow_bucket_creation"] = False
        if self.region:
            kwargs["region"] = self.region
        keys = keys or self.current_keys()
        if keys is not None:
            kwargs["access_key"], kwargs["secret_key"] = keys[0], keys[1]
            if keys[2]:
                kwargs["session_token"] = keys[2]
        return pafs.S3FileSystem(**kwargs)

    def client(self) -> Any:
        """A boto3 S3 client with the same endpoint, region, current keys and retries."""
        import boto3
        from botocore.config import Config

        kwargs: dict[str, Any] = {
            "config": Config(retries={"mode": "standard", "max_attempts": s3_max_attempts()})
        }
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
        if self.region:
            kwargs["region_name"] = self.region
        keys = self.current_keys()
        if keys is not None:
            kwargs["aws_access_key_id"], kwargs["aws_secret_access_key"] = keys[0], keys[1]
            kwargs["aws_session_token"] = keys[2]
        return boto3.client("s3", **kwargs)


class Store:
    """Where a location's bytes live; hands out a filesystem ready to use now."""

    def filesystem(self) -> pafs.FileSystem:
        raise NotImplementedError

    @property
    def s3(self) -> S3Options | None:
        return None


class LocalStore(Store):
    def __init__(self) -> None:
        self._filesystem = pafs.LocalFileSystem()

    def filesystem(self) -> pafs.FileSystem:
        return self._filesystem


class S3Store(Store):
    """One S3 endpoint and identity. With refreshing credentials, the pyarrow filesystem
    (which copies keys when it is made) is made again whenever botocore hands out new keys;
    botocore does so 10-15 minutes before the old ones expire, so work in flight on the old
    filesystem finishes well inside their lifetime."""

    #: How often refreshing credentials are asked for their current keys.
    CHECK_SECONDS = 30.0

    def __init__(self, options: S3Options) -> None:
        self.options = options
        self._filesystem: pafs.S3FileSystem | None = None
        self._keys: tuple[str, str, str | None] | None = None
        self._checked = 0.0

    @property
    def s3(self) -> S3Options:
        return self.options

    def filesystem(self) -> pafs.FileSystem:
        now = time.monotonic()
        refreshing = self.options.credentials is not None
        if self._filesystem is None or (refreshing and now - self._checked > self.CHECK_SECONDS):
            try:
                keys = self.options.current_keys()
                if self._filesystem is None or keys != self._keys:
                    self._filesystem = self.options.filesystem(keys)
                    self._keys = keys
            except OSError as exc:
                raise StorageError(f"cannot reach S3: {_one_line(exc)}") from None
            self._checked = now
        return self._filesystem

    def __reduce__(self) -> tuple[type[S3Store], tuple[S3Options]]:
        # Sent to worker processes: they build their own filesystem from the options.
        return type(self), (self.options,)


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b")``."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise StorageError(f"not an S3 URI: {uri!r} (expected s3://bucket/key)")
    return parsed.netloc, parsed.path.lstrip("/")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


@dataclass(frozen=True)
class Location:
    """A place in a store: the store, a path inside its filesystem, and how to name it to
    people (the URI)."""

    store: Store = field(repr=False, compare=False)
    path: str
    uri: str

    @property
    def filesystem(self) -> pafs.FileSystem:
        return self.store.filesystem()

    @property
    def s3(self) -> S3Options | None:
        return self.store.s3

    def sibling(self, name: str) -> Location:
        """The location named ``name`` in the same folder."""
        return Location(
            self.store,
            f"{self.path.rsplit('/', 1)[0]}/{name}",
            f"{self.uri.rsplit('/', 1)[0]}/{name}",
        )

    def child(self, *parts: str) -> Location:
        suffix = "/".join(part.strip("/") for part in parts if part)
        if not suffix:
            return self
        return Location(
            self.store,
            f"{self.path.rstrip('/')}/{suffix}",
            f"{self.uri.rstrip('/')}/{suffix}",
        )

    @property
    def is_s3(self) -> bool:
        return self.uri.startswith("s3://")

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    def _info(self) -> pafs.FileInfo:
        try:
            return self.filesystem.get_file_info(self.path)
        except OSError as exc:
            raise StorageError(f"cannot look at {self.uri}: {_one_line(exc)}") from None

    def exists(self) -> bool:
        return bool(self._info().type != pafs.FileType.NotFound)

    def is_file(self) -> bool:
        return bool(self._info().type == pafs.FileType.File)

    def size(self) -> int:
        """The object's size in bytes (0 when it does not exist)."""
        return int(self._info().size or 0)

    def read_bytes(self) -> bytes:
        try:
            with self.filesystem.open_input_stream(self.path, compression=None) as stream:
                return bytes(stream.read())
        except FileNotFoundError:
            raise StorageError(f"{self.uri} does not exist") from None
        except OSError as exc:
            raise StorageError(f"cannot read {self.uri}: {_one_line(exc)}") from None

    def read_document(
        self,
        parse: Callable[[Any], _Parsed],
        what: str,
        fix: str = "restore it from a copy, or delete it",
    ) -> _Parsed:
        """Read a JSON document written by a contract (a record, a report) and parse it;
        a file that is not what the contract says raises :class:`UnreadableRecordError`
        naming the file."""
        payload = self.read_bytes()
        try:
            return parse(orjson.loads(payload))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UnreadableRecordError(
                f"{self.uri} is not a valid {what} ({type(exc).__name__}: {exc}); it was "
                f"edited or written by another tool: {fix}"
            ) from None

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
            raise StorageError(f"cannot write {self.uri}: {_one_line(exc)}") from None

    def write_file(self, local_path: str | Path, chunk_bytes: int = 8 << 20) -> None:
        """Write a whole object from a local file, streamed (never all of it in memory). On
        S3 the object appears only when complete; locally, a rename."""
        try:
            if not self.is_s3:
                target = Path(self.path)
                target.parent.mkdir(parents=True, exist_ok=True)
                temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}")
                shutil.copyfile(local_path, temporary)
                os.replace(temporary, target)
                return
            with (
                open(local_path, "rb") as source,
                self.filesystem.open_output_stream(self.path, compression=None) as stream,
            ):
                while chunk := source.read(chunk_bytes):
                    stream.write(chunk)
        except OSError as exc:
            raise StorageError(f"cannot write {self.uri}: {_one_line(exc)}") from None

    def update(self, decide: Callable[[bytes | None], bytes | None], attempts: int = 8) -> bool:
        """Replace this object with ``decide(current)`` unless it returns None, so that no
        concurrent writer's update is lost: on S3 a conditional PUT (``If-Match`` on the
        ETag read, ``If-None-Match: *`` when there was none) read again on conflict;
        locally under an exclusive ``flock`` of a sibling ``.lock`` file. Returns whether it
        wrote."""
        if not self.is_s3:
            handle = _lock_file(Path(self.path).with_name(f".{self.name}.lock"), self.uri)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX)
                current = Path(self.path).read_bytes() if Path(self.path).is_file() else None
                payload = decide(current)
                if payload is not None:
                    self.write_bytes(payload)
                return payload is not None
            finally:
                os.close(handle)
        from botocore.exceptions import ClientError

        client = (self.s3 or S3Options.from_env()).client()
        bucket, key = self.bucket_and_key()
        for _ in range(attempts):
            try:
                response = client.get_object(Bucket=bucket, Key=key)
                current, etag = response["Body"].read(), str(response.get("ETag"))
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404"):
                    raise StorageError(f"cannot read {self.uri}: {_one_line(exc)}") from None
                current, etag = None, None
            payload = decide(current)
            if payload is None:
                return False
            condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
            try:
                client.put_object(Bucket=bucket, Key=key, Body=payload, **condition)
                return True
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                if code not in ("PreconditionFailed", "ConditionalRequestConflict"):
                    raise StorageError(f"cannot write {self.uri}: {_one_line(exc)}") from None
        raise StorageError(
            f"cannot update {self.uri}: other writers changed it {attempts} times while this "
            "one tried; run again"
        )

    def copy_to(self, target: Location) -> None:
        """Make ``target`` a whole copy of this object (replacing it), never a partial one.

        S3: a server-side copy, which appears whole. Locally: a hard link (or a copy where
        links do not work) under a temporary name, renamed into place.
        """
        try:
            if self.is_s3:
                self.filesystem.copy_file(self.path, target.path)
                return
            destination = Path(target.path)
            destination.parent.mkdir(parents=True, exist_ok=True)
            temporary = destination.with_name(f".{destination.name}.tmp-{os.getpid()}")
            temporary.unlink(missing_ok=True)
            try:
                os.link(self.path, temporary)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                    raise
                shutil.copyfile(self.path, temporary)
            try:
                os.replace(temporary, destination)
            finally:
                temporary.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(
                f"cannot copy {self.uri} to {target.uri}: {_one_line(exc)}"
            ) from None

    def delete(self) -> None:
        """Remove this object if it exists."""
        try:
            if self.is_s3:
                self.filesystem.delete_file(self.path)
            else:
                Path(self.path).unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StorageError(f"cannot delete {self.uri}: {_one_line(exc)}") from None

    def delete_tree(self) -> None:
        """Remove this folder and everything below it, if it exists."""
        try:
            if self.exists():
                self.filesystem.delete_dir(self.path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StorageError(f"cannot delete {self.uri}: {_one_line(exc)}") from None

    def _list(self) -> list[pafs.FileInfo]:
        selector = pafs.FileSelector(self.path, allow_not_found=True, recursive=False)
        try:
            return list(self.filesystem.get_file_info(selector))
        except OSError as exc:
            raise StorageError(f"cannot list {self.uri}: {_one_line(exc)}") from None

    def list_files(self) -> list[Location]:
        """The objects directly inside this folder (none when it does not exist), by name."""
        names = sorted(info.base_name for info in self._list() if info.type == pafs.FileType.File)
        return [self.child(name) for name in names]

    def list_folders(self) -> list[Location]:
        """The folders directly inside this folder, by name."""
        names = sorted(
            info.base_name for info in self._list() if info.type == pafs.FileType.Directory
        )
        return [self.child(name) for name in names]

    def file_sizes(self) -> dict[str, int]:
        """Every data file under this folder (one recursive listing) and its bytes, by path;
        folders and files whose names start with ``_`` or ``.`` are left out, as the lake's
        readers leave them out."""
        selector = pafs.FileSelector(self.path, allow_not_found=True, recursive=True)
        try:
            infos = self.filesystem.get_file_info(selector)
        except OSError as exc:
            raise StorageError(f"cannot list {self.uri}: {_one_line(exc)}") from None
        sizes = {}
        for info in infos:
            relative = info.path[len(self.path) :].strip("/")
            if info.type != pafs.FileType.File or any(
                part.startswith(("_", ".")) for part in relative.split("/")
            ):
                continue
            sizes[info.path] = int(info.size or 0)
        return sizes

    def newest_file(self, suffix: str = "") -> Location | None:
        """The most recently written object directly inside this folder (ending in
        ``suffix``), from one listing; None if there is none."""
        found = self.newest_files(1, lambda name: name.endswith(suffix))
        return found[0] if found else None

    def newest_files(self, count: int, accept: Callable[[str], bool]) -> list[Location]:
        """Up to ``count`` objects directly inside this folder whose names ``accept`` takes,
        most recently written first, from one listing."""
        found = [
            info
            for info in self._list()
            if info.type == pafs.FileType.File and accept(info.base_name)
        ]
        found.sort(key=lambda info: (info.mtime_ns or 0, info.base_name), reverse=True)
        return [self.child(info.base_name) for info in found[:count]]

    def bucket_and_key(self) -> tuple[str, str]:
        return split_s3_uri(self.uri)

    def check_folder(self, role: str) -> None:
        """Refuse, in plain words, a folder that cannot hold what we write into it.

        ``role`` names the folder for the message (e.g. ``--lake``). Local: the path and its
        parents must be folders (or not yet exist). S3: the bucket must exist.
        """
        if self.is_s3:
            bucket, _ = self.bucket_and_key()
            info = self.filesystem.get_file_info(bucket) if bucket else None
            if info is None or info.type == pafs.FileType.NotFound:
                raise StorageError(
                    f"{role} {self.uri}: S3 bucket {bucket!r} does not exist (or this identity "
                    "may not see it); create it or fix the bucket name"
                )
            return
        path = Path(self.path)
        for candidate in (path, *path.parents):
            if candidate.exists() or candidate.is_symlink():
                if not candidate.is_dir():
                    what = "is" if candidate == path else f"is below {candidate}, which is"
                    raise StorageError(
                        f"{role} {self.uri} {what} a file, not a folder; give a folder path"
                    )
                if not os.access(candidate, os.W_OK | os.X_OK):
                    raise StorageError(
                        f"{role} {self.uri}: {candidate} is not writable; fix its permissions "
                        "or choose another folder"
                    )
                return


def resolve(location: str, s3: S3Options | None = None) -> Location:
    """Resolve an ``s3://`` URI or a local path to a :class:`Location`."""
    if not location or not location.strip():
        raise StorageError("empty location: give an s3://bucket/key URI or a folder path")
    if location.startswith("s3://"):
        bucket, key = split_s3_uri(location)
        if not valid_bucket_name(bucket):
            raise StorageError(
                f"{location}: {bucket!r} is not a valid S3 bucket name (3-63 lowercase letters, "
                "digits, dots and hyphens)"
            )
        if any(part in (".", "..") for part in key.split("/")):
            raise StorageError(f"{location}: '.' and '..' are not allowed in an S3 key")
        store = S3Store(s3 or S3Options.from_env())
        store.filesystem()  # fail here, naming the location, if S3 cannot be reached at all
        return Location(store, f"{bucket}/{key}".rstrip("/"), location.rstrip("/"))
    if "://" in location:
        raise StorageError(f"unsupported location {location!r}: use s3://bucket/key or a path")
    path = str(Path(location).expanduser().resolve())
    return Location(LocalStore(), path, path)


# --- leases ----------------------------------------------------------------------------


@dataclass
class Lease:
    """An exclusive hold on ``location``: :meth:`keep` while working, :meth:`release` after."""

    location: Location
    owner: str
    ttl: float
    etag: str | None = None  # S3: the lease object's ETag, for conditional renewal
    handle: int | None = None  # local: the flock'ed file descriptor
    renewed: float = field(default_factory=time.monotonic)

    def keep(self) -> None:
        """Renew an S3 lease once a third of its time has passed (local leases need not)."""
        if self.handle is not None or time.monotonic() - self.renewed < self.ttl / 3:
            return
        client = (self.location.s3 or S3Options.from_env()).client()
        bucket, key = self.location.bucket_and_key()
        try:
            response = client.put_object(
                Bucket=bucket, Key=key, Body=_lease_body(self.owner, self.ttl), IfMatch=self.etag
            )
        except Exception as exc:  # botocore's ClientError; imported lazily
            raise LeaseHeldError(
                f"lost the lease {self.location.uri} ({_one_line(exc)}): another writer took "
                "it over after it expired; stop and re-run"
            ) from None
        self.etag = response.get("ETag")
        self.renewed = time.monotonic()

    def release(self) -> None:
        if self.handle is not None:
            os.close(self.handle)  # closing drops the flock
            self.handle = None
            return
        client = (self.location.s3 or S3Options.from_env()).client()
        bucket, key = self.location.bucket_and_key()
        # Delete only our own lease: a holder that overran its time may have been replaced.
        # (The check and the delete are two requests; the window between them is small.)
        current = _read_s3_lease(client, bucket, key)
        if current is not None and current[1] == self.etag:
            client.delete_object(Bucket=bucket, Key=key)


def _lease_body(owner: str, ttl: float) -> bytes:
    now = datetime.now(UTC)
    return orjson.dumps(
        {
            "owner": owner,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "acquired": now.isoformat(),
            "expires": (now + timedelta(seconds=ttl)).isoformat(),
        }
    )


def _read_s3_lease(client: Any, bucket: str, key: str) -> tuple[dict[str, Any], str] | None:
    from botocore.exceptions import ClientError

    try:
        response = client.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise
    try:
        body = orjson.loads(response["Body"].read())
    except orjson.JSONDecodeError:
        body = {}
    return (body if isinstance(body, dict) else {}), str(response.get("ETag"))


def _held_message(location: Location, holder: dict[str, Any]) -> str:
    who = f"{holder.get('owner', '?')} on {holder.get('host', '?')} (pid {holder.get('pid', '?')})"
    return (
        f"{location.uri} is held by {who} since {holder.get('acquired', '?')} until "
        f"{holder.get('expires', '?')}: another run is working on the same thing. Wait for it "
        f"and re-run; if that run died, re-run after {holder.get('expires', 'it expires')} "
        f"(or delete {location.uri})"
    )


def acquire_lease(location: Location, owner: str, ttl: float = 900.0) -> Lease:
    """Take the lease at ``location`` for ``owner`` or raise :class:`LeaseHeldError`.

    An S3 lease held by the same ``owner`` (a retried task) or past its expiry is taken
    over atomically (``If-Match`` on the ETag that was read); a local one is free as soon
    as its holder's process ends.
    """
    if not location.is_s3:
        return _acquire_local(location, owner, ttl)
    from botocore.exceptions import ClientError

    client = (location.s3 or S3Options.from_env()).client()
    bucket, key = location.bucket_and_key()
    body = _lease_body(owner, ttl)
    try:
        response = client.put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*")
        return Lease(location, owner, ttl, etag=response.get("ETag"))
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code not in ("PreconditionFailed", "ConditionalRequestConflict"):
            raise StorageError(f"cannot create {location.uri}: {code}: {exc}") from None
    current = _read_s3_lease(client, bucket, key)
    if current is None:  # released between our two requests: try once more from scratch
        return acquire_lease(location, owner, ttl)
    holder, etag = current
    expires = _parse_expiry(holder.get("expires"))
    if holder.get("owner") != owner and expires > datetime.now(UTC):
        raise LeaseHeldError(_held_message(location, holder))
    try:
        response = client.put_object(Bucket=bucket, Key=key, Body=body, IfMatch=etag)
    except ClientError:
        raise LeaseHeldError(_held_message(location, holder)) from None
    return Lease(location, owner, ttl, etag=response.get("ETag"))


def _parse_expiry(text: object) -> datetime:
    try:
        moment = datetime.fromisoformat(str(text))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)  # unreadable: treat as expired
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _lock_file(path: Path, uri: str) -> int:
    """A local file to ``flock`` (created with its folder), as an open descriptor."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StorageError(f"cannot create {uri}: {_one_line(exc)}") from None


def _acquire_local(location: Location, owner: str, ttl: float) -> Lease:
    path = Path(location.path)
    handle = _lock_file(path, location.uri)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = orjson.loads(path.read_bytes() or b"{}")
        except (OSError, orjson.JSONDecodeError):
            holder = {}
        os.close(handle)
        raise LeaseHeldError(_held_message(location, holder)) from None
    os.ftruncate(handle, 0)
    os.pwrite(handle, _lease_body(owner, ttl), 0)
    return Lease(location, owner, ttl, handle=handle)
