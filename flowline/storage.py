"""Object storage (MinIO, or any S3 server) through the `minio` client.

The endpoint and credentials come from the environment, as KFP and KServe pods get them:
$FLOWLINE_S3_ENDPOINT (host:port, for example minio-service.kubeflow:9000),
$AWS_ACCESS_KEY_ID, $AWS_SECRET_ACCESS_KEY, and $FLOWLINE_S3_SECURE ("true" for TLS).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

ENDPOINT_ENV = "FLOWLINE_S3_ENDPOINT"
ACCESS_KEY_ENV = "AWS_ACCESS_KEY_ID"
SECRET_KEY_ENV = "AWS_SECRET_ACCESS_KEY"
SECURE_ENV = "FLOWLINE_S3_SECURE"
SCHEME = "s3://"


class StorageError(RuntimeError):
    """Object storage is not configured, refused the request, or lacks an object; the message says which."""


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # no leading or trailing "/"

    @classmethod
    def parse(cls, uri: str) -> S3Location:
        if not uri.startswith(SCHEME):
            raise StorageError(f"{uri!r} is not an s3:// URI")
        bucket, _, prefix = uri.removeprefix(SCHEME).partition("/")
        if not bucket:
            raise StorageError(f"{uri!r} names no bucket")
        return cls(bucket, prefix.strip("/"))

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix}" if self.prefix else f"{SCHEME}{self.bucket}"


def is_s3(location: object) -> bool:
    return isinstance(location, str) and location.startswith(SCHEME)


def s3_client():
    """A minio client for the endpoint and credentials in the environment."""
    from minio import Minio

    missing = [name for name in (ENDPOINT_ENV, ACCESS_KEY_ENV, SECRET_KEY_ENV) if not os.environ.get(name)]
    if missing:
        raise StorageError(f"object storage is not configured: set {', '.join(missing)}")
    return Minio(os.environ[ENDPOINT_ENV], access_key=os.environ[ACCESS_KEY_ENV],
                 secret_key=os.environ[SECRET_KEY_ENV], secure=os.environ.get(SECURE_ENV, "false") == "true")
