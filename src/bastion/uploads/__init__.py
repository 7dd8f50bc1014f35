"""File uploads: receive, judge, name and store files that clients send.

- :func:`receive_file` streams the one file of a ``multipart/form-data`` body into
  storage under a size cap, and commits it only when it is whole and allowed;
- :class:`TypeSniffer` / :func:`detect_type` decide the type from the bytes (magic
  numbers, or strict UTF-8 text), never from the name or the declared type;
- :func:`safe_filename` makes a display name of a client's file name, and
  :func:`content_disposition` the download header that offers it back;
- :class:`AttachmentStorage` is the storage protocol (an S3-compatible backend fits
  it); :class:`LocalAttachmentStorage` keeps objects in a private folder.

Nothing here knows HTTP frameworks: the web layer passes the body's chunks and its
``Content-Type``. Refusals form one branch of the error tree::

    BastionError
    └── UploadError                   validation-error        422
        ├── UploadTooLargeError       payload-too-large       413
        ├── UnsupportedMediaTypeError unsupported-media-type  415
        └── InsufficientStorageError  insufficient-storage    507
"""

from bastion.uploads._detect import (
    DEFAULT_TYPES,
    SUPPORTED_TYPES,
    TEXT,
    TypeSniffer,
    declared_type,
    detect_type,
    served_type,
)
from bastion.uploads._errors import (
    InsufficientStorageError,
    UnsupportedMediaTypeError,
    UploadError,
    UploadTooLargeError,
)
from bastion.uploads._multipart import (
    MULTIPART_OVERHEAD,
    ReceivedFile,
    UploadPolicy,
    receive_file,
)
from bastion.uploads._names import (
    FALLBACK_FILENAME,
    MAX_FILENAME_BYTES,
    content_disposition,
    safe_filename,
)
from bastion.uploads._storage import (
    AttachmentStorage,
    AttachmentWriter,
    LocalAttachmentStorage,
    new_key,
)

__all__ = [
    "DEFAULT_TYPES",
    "FALLBACK_FILENAME",
    "MAX_FILENAME_BYTES",
    "MULTIPART_OVERHEAD",
    "SUPPORTED_TYPES",
    "TEXT",
    "AttachmentStorage",
    "AttachmentWriter",
    "InsufficientStorageError",
    "LocalAttachmentStorage",
    "ReceivedFile",
    "TypeSniffer",
    "UnsupportedMediaTypeError",
    "UploadError",
    "UploadPolicy",
    "UploadTooLargeError",
    "content_disposition",
    "declared_type",
    "detect_type",
    "new_key",
    "receive_file",
    "safe_filename",
    "served_type",
]
