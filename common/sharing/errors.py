"""Typed errors of the sharing verbs; each message names the file or key, what was expected and what was found."""

from __future__ import annotations

from common.errors import MedxferError

__all__ = ["IntegrityError", "PackError", "SharingError", "SignatureError", "UnsafeArchiveError", "VerificationError"]


class SharingError(MedxferError, ValueError):
    """A bundle could not be packed, received or checked."""


class UnsafeArchiveError(SharingError):
    """An archive entry would escape the destination, is a link, or exceeds a size or count limit."""


class IntegrityError(SharingError):
    """A file differs from the manifest: changed, added or removed."""


class SignatureError(SharingError):
    """A signature is missing, malformed, does not match, or was made by a key that is not trusted."""


class PackError(SharingError):
    """A bundle cannot be packed as asked (missing model, version already released, ...)."""


class VerificationError(SharingError):
    """A received bundle failed verification or its audit; ``report`` holds the full report when there is one.

    The sharing verbs exit with status 1 (not 2) on this error: the input was read, and it was refused.
    """

    def __init__(self, message: str, report: object = None) -> None:
        super().__init__(message)
        self.report = report
