"""Object storage (MinIO, or any S3 server) through the `minio` client.

The endpoint and credentials come from the environment, as KFP and KServe pods get them:
$FLOWLINE_S3_ENDPOINT (host:port, for example minio-service.kubeflow:9000),
$AWS_ACCESS_KEY_ID, $AWS_SECRET_ACCESS_KEY, and $FLOWLINE_S3_SECURE ("true" for TLS).
Or from a Kubernetes Secret: $FLOWLINE_S3_SECRET=NAMESPACE/NAME names one with the keys
AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and the endpoint in KServe's annotation
serving.kserve.io/s3-endpoint when $FLOWLINE_S3_ENDPOINT is unset), read with the pod's
service account or the kubeconfig.

Files go up in 5 MiB parts (multipart above that size). Every failure is a StorageError
that names the object and says what went wrong: no such object or bucket, credentials
refused, the server unreachable.
"""

from __future__ import annotations

import base64
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

ENDPOINT_ENV = "FLOWLINE_S3_ENDPOINT"
ACCESS_KEY_ENV = "AWS_ACCESS_KEY_ID"
SECRET_KEY_ENV = "AWS_SECRET_ACCESS_KEY"
SECURE_ENV = "FLOWLINE_S3_SECURE"
SECRET_ENV = "FLOWLINE_S3_SECRET"
SECRET_ENDPOINT_ANNOTATION = "serving.kserve.io/s3-endpoint"
# The Kubernetes Secret whose keys pipeline and Katib trial pods get as environment variables of the
# same names (the variables above): the object store's endpoint and credentials.
POD_SECRET = "flowline-s3"
POD_SECRET_KEYS = (ENDPOINT_ENV, ACCESS_KEY_ENV, SECRET_KEY_ENV)
SCHEME = "s3://"
PART_SIZE = 5 * 1024 * 1024  # S3's smallest part: files above it are uploaded in parts
MISSING_CODES = {"NoSuchKey", "NoSuchBucket", "NoSuchObject", "ResourceNotFound"}
REFUSED_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken"}


class StorageError(RuntimeError):
    """Object storage is not configured, refused the request, or lacks an object; the message says which."""


class MissingObject(StorageError):
    """Object storage answered, and the object or its bucket is not there."""


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

    def uri(self, name: str) -> str:
        """The s3:// URI of `name` under this prefix."""
        return f"{SCHEME}{self.bucket}/{self.key(name)}"

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix}" if self.prefix else f"{SCHEME}{self.bucket}"


def new_file_mode() -> int:
    """The mode a file opened for writing gets (0o666 less the umask): for one written as a private temporary
    file (0600) and then renamed into place, so that it is as readable as any other file written here."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def is_s3(location: object) -> bool:
    return isinstance(location, str) and location.startswith(SCHEME)


def artifact_object_uri(artifact_uri: str) -> str:
    """The s3:// URI of a KFP artifact, which KFP names minio:// (KServe's storage initializer and this module
    read s3://); any other URI as it is."""
    return SCHEME + artifact_uri.removeprefix("minio://") if artifact_uri.startswith("minio://") else artifact_uri


def keep_failed_output(path: str | Path, artifact_uri: str) -> str:
    """Where a step's output file stays readable when the step then fails, which the step's error names.

    KFP's launcher uploads a step's output artifacts only once its command succeeds (launcher_v2.go returns on the
    command's error first), so the quarantine a failing ingest or batch step writes would be lost on a cluster: there
    the artifact's URI is in object storage, and the file is put there now. Under kfp.local the URI is the file's
    own path, which stays (as does a file written to object storage already, or where no URI is given). A failed
    upload is said, not raised: the step's own error is the one to report."""
    uri = artifact_object_uri(artifact_uri)
    if not is_s3(uri) or is_s3(str(path)):
        return str(path)
    try:
        upload_file(path, uri)
    except StorageError as error:
        return f"{path} (lost with the step's pod: it could not be put at {uri}: {error})"
    return uri


def secret_credentials(secret: str, kubeconfig: Optional[str] = None) -> dict[str, str]:
    """{"access_key", "secret_key", and "endpoint" if annotated} from the Secret NAMESPACE/NAME."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    from flowline.cluster import api_client

    namespace, _, name = secret.partition("/")
    if not (namespace and name):
        raise StorageError(f"${SECRET_ENV} {secret!r}: give NAMESPACE/NAME")
    api = client.CoreV1Api(api_client(kubeconfig))
    try:
        found = api.read_namespaced_secret(name, namespace)
    except ApiException as error:
        raise StorageError(f"Secret {secret} cannot be read: {error.status} {error.reason}") from None
    data = found.data or {}
    missing = [key for key in (ACCESS_KEY_ENV, SECRET_KEY_ENV) if key not in data]
    if missing:
        raise StorageError(f"Secret {secret} lacks {', '.join(missing)}")
    credentials = {"access_key": base64.b64decode(data[ACCESS_KEY_ENV]).decode(),
                   "secret_key": base64.b64decode(data[SECRET_KEY_ENV]).decode()}
    endpoint = (found.metadata.annotations or {}).get(SECRET_ENDPOINT_ANNOTATION)
    if endpoint:
        credentials["endpoint"] = endpoint
    return credentials


def s3_client(kubeconfig: Optional[str] = None):
    """A minio client for the endpoint and credentials in the environment, or in the Secret it names."""
    from minio import Minio

    settings = {"endpoint": os.environ.get(ENDPOINT_ENV), "access_key": os.environ.get(ACCESS_KEY_ENV),
                "secret_key": os.environ.get(SECRET_KEY_ENV)}
    if os.environ.get(SECRET_ENV) and not (settings["access_key"] and settings["secret_key"]):
        from_secret = secret_credentials(os.environ[SECRET_ENV], kubeconfig)
        settings = {**from_secret, "endpoint": settings["endpoint"] or from_secret.get("endpoint")}
    names = {"endpoint": ENDPOINT_ENV, "access_key": ACCESS_KEY_ENV, "secret_key": SECRET_KEY_ENV}
    missing = [names[key] for key, value in settings.items() if not value]
    if missing:
        raise StorageError(f"object storage is not configured: set {', '.join(missing)} (or {SECRET_ENV})")
    endpoint = settings["endpoint"].removeprefix("http://").removeprefix("https://")
    return Minio(endpoint, access_key=settings["access_key"], secret_key=settings["secret_key"],
                 secure=os.environ.get(SECURE_ENV, "false") == "true")


@contextlib.contextmanager
def explained_errors(uri: str) -> Iterator[None]:
    """Turn the minio client's errors about `uri` into StorageErrors that say what went wrong."""
    from minio.error import S3Error
    from urllib3.exceptions import HTTPError

    try:
        yield
    except S3Error as error:
        if error.code in MISSING_CODES:
            raise MissingObject(f"{uri} does not exist ({error.code})") from None
        if error.code in REFUSED_CODES:
            raise StorageError(f"object storage refused the credentials for {uri} ({error.code}): check "
                               f"{ACCESS_KEY_ENV} and {SECRET_KEY_ENV}") from None
        raise StorageError(f"object storage refused {uri}: {error.code}: {error.message}") from None
    except HTTPError as error:
        raise StorageError(f"object storage cannot be reached for {uri}: {error}") from None


def read_object(client, bucket: str, key: str) -> bytes:
    """The whole object, its connection released."""
    response = client.get_object(bucket, key)
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()


def upload_file(path: str | Path, uri: str, client=None) -> str:
    """Put a local file at `uri` (s3://bucket/key), in parts above 5 MiB; return the object's ETag.
    `client`: a minio client to reuse across many objects (default: a new one, `s3_client()`)."""
    location = S3Location.parse(uri)
    with explained_errors(uri):
        client = client or s3_client()
        client.fput_object(location.bucket, location.prefix, str(path), part_size=PART_SIZE)
        # as stored: a multipart upload's ETag ends in -PARTS (minio's result lacks it for some servers)
        return client.stat_object(location.bucket, location.prefix).etag


def download_file(uri: str, path: str | Path, client=None) -> Path:
    """Get the object at `uri` into a local file (`client` as for upload_file)."""
    location = S3Location.parse(uri)
    with explained_errors(uri):
        (client or s3_client()).fget_object(location.bucket, location.prefix, str(path))
    return Path(path)


def read_bytes(uri: str, client=None) -> bytes:
    """The whole object at `uri` (`client` as for upload_file)."""
    location = S3Location.parse(uri)
    with explained_errors(uri):
        return read_object(client or s3_client(), location.bucket, location.prefix)
