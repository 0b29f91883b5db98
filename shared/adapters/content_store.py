"""Page bodies in Blob Storage, content-addressed: a body is stored once, under its SHA-256, gzip-compressed.

PostgreSQL keeps the hashes and sizes; identical bodies (the same page scraped by many jobs, an unchanged page
scraped again) share one blob. Writes are idempotent, so a redelivered item re-stores nothing: a blob's name
is its content, and an upload that finds the name taken is done.
"""
from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Iterator
from contextlib import suppress

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContainerClient, ContentSettings

from shared.domain.content import StoredBody
from shared.domain.errors import NotFound, StorageUnavailable

# gzip level 6: about as small as 9 on text, at a third of the CPU.
_LEVEL = 6
_CHUNK = 64 * 1024


def blob_name(sha256: str) -> str:
    """`sha256/ab/abcdef...gz`: a prefix per first byte keeps listings and deletes of a range cheap."""
    return f"sha256/{sha256[:2]}/{sha256}.gz"


class ContentStore:
    """The container of page bodies."""

    def __init__(self, container: ContainerClient) -> None:
        self._container = container

    def put(self, body: bytes, media_type: str) -> StoredBody:
        """Store `body` unless a blob with its hash exists; return its address either way. StorageUnavailable
        when the account cannot be reached: a delay for the worker, like a database outage."""
        sha256 = hashlib.sha256(body).hexdigest()
        compressed = gzip.compress(body, compresslevel=_LEVEL, mtime=0)
        blob = self._container.get_blob_client(blob_name(sha256))
        settings = ContentSettings(content_type=media_type, content_encoding="gzip")
        try:
            try:
                blob.upload_blob(compressed, overwrite=False, content_settings=settings)
            except ResourceNotFoundError:
                # The container is created on first use (Bicep creates it on Azure; Azurite starts empty).
                with suppress(ResourceExistsError):
                    self._container.create_container()
                blob.upload_blob(compressed, overwrite=False, content_settings=settings)
        except ResourceExistsError:
            pass  # the same content, stored by an earlier item or delivery
        except AzureError as exc:
            raise StorageUnavailable(f"page bodies cannot be stored: {type(exc).__name__}") from exc
        return StoredBody(sha256, len(body))

    def chunks(self, sha256: str) -> Iterator[bytes]:
        """The body's bytes, decompressed a download chunk at a time: never the whole body in memory at once."""
        try:
            # decompress=False: the SDK would inflate a gzip Content-Encoding whole; this inflates chunk by chunk.
            download = self._container.get_blob_client(blob_name(sha256)).download_blob(decompress=False)
        except ResourceNotFoundError as exc:
            raise NotFound(f"no stored body with SHA-256 {sha256}") from exc
        except AzureError as exc:
            raise StorageUnavailable(f"page bodies cannot be read: {type(exc).__name__}") from exc
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        for chunk in download.chunks():
            if piece := inflater.decompress(chunk):
                yield piece
        if rest := inflater.flush():
            yield rest

    def read(self, sha256: str, max_bytes: int) -> tuple[bytes, bool]:
        """The body's first `max_bytes` bytes, and whether it was longer."""
        kept = bytearray()
        for chunk in self.chunks(sha256):
            kept += chunk
            if len(kept) > max_bytes:
                return bytes(kept[:max_bytes]), True
        return bytes(kept), False

    def delete(self, sha256: str) -> None:
        """Remove a body no row names any more (gone already is fine)."""
        with suppress(ResourceNotFoundError):
            self._container.delete_blob(blob_name(sha256))
