"""Why an upload was refused: the upload branch of the error tree."""

from __future__ import annotations

from bastion.errors import BastionError

__all__ = [
    "InsufficientStorageError",
    "UnsupportedMediaTypeError",
    "UploadError",
    "UploadTooLargeError",
]


class UploadError(BastionError):
    """The upload is not valid (parts, an empty file, a declared type that disagrees
    with the content); ``reason`` says why, in words fit for the client."""

    code = "validation-error"
    title = "Validation error"
    status = 422


class UploadTooLargeError(UploadError):
    """The file, or the body around it, passed the size cap (OWASP API4:2023)."""

    code = "payload-too-large"
    title = "Payload too large"
    status = 413


class UnsupportedMediaTypeError(UploadError):
    """The content, or the type the client declared, is not one of the allowed types."""

    code = "unsupported-media-type"
    title = "Unsupported media type"
    status = 415


class InsufficientStorageError(UploadError):
    """Storing the file would pass a storage quota (OWASP API4:2023). 507, as WebDAV
    answers a request that would exceed a quota (RFC 4918 §11.5, RFC 4331 §6)."""

    code = "insufficient-storage"
    title = "Insufficient storage"
    status = 507
