"""URLs (``s3://``, ``gs://``, ``http(s)://``, ``memory://``, any fsspec protocol) as sources and
targets of :func:`milo_pack.dump`, :func:`~milo_pack.load`, :func:`~milo_pack.open`...

fsspec is an optional dependency (``pip install 'milo_pack[remote]'``, plus the protocol's own
package such as s3fs or gcsfs); plain paths never import it.  Reading goes through
:class:`~milo_pack.blockfile.BlockFile` (aligned blocks, coalesced ranged requests, each byte
fetched once while the object fits the cache), not through the filesystem's own read-ahead
cache, which is tuned for streaming, not for the jumps of a lazy load.  A local path given as a
URL (``file://``) is opened as a plain file, so it can still be memory-mapped.

Writing is atomic, as for paths: the archive is written to a local temporary file first, then
handed to the store in one operation that either makes the whole object visible or nothing
(an object store's single or multipart upload, completed only at the end and aborted on failure;
elsewhere a temporary name beside the target renamed into place).
"""

from __future__ import annotations

import os
import re
import tempfile
import uuid
from collections.abc import Mapping
from typing import IO, Any, cast

from .blockfile import DEFAULT_IO_CACHE_BYTES, BlockFile

__all__ = ["is_url", "filesystem", "open_url", "object_identity", "dump_to_url"]

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*(::[A-Za-z][A-Za-z0-9+.\-]*)*://")
# Stores whose upload of a whole file is atomic: the object appears complete or not at all.
_ATOMIC_PUT = frozenset({"s3", "s3a", "gs", "gcs", "abfs", "az", "abfss", "adl", "oss",
                         "memory"})


def is_url(target: Any) -> bool:
    """Whether ``target`` is a URL string (``scheme://...``) rather than a path or file."""
    return isinstance(target, str) and _URL.match(target) is not None


def filesystem(url: str, storage_options: Mapping[str, Any] | None = None) -> tuple[Any, str]:
    """``(fsspec filesystem, path)`` for a URL; ImportError naming the extra when fsspec lacks."""
    try:
        import fsspec.core
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            f"opening {url!r} needs fsspec: pip install 'milo_pack[remote]' (and the "
            "protocol's package, e.g. s3fs or gcsfs)") from None
    options = dict(storage_options or {})
    fs, path = fsspec.core.url_to_fs(url, **options)
    return fs, path


def _is_local(fs: Any) -> bool:
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(fs, LocalFileSystem)


def _protocols(fs: Any) -> set[str]:
    protocol = fs.protocol
    return set(protocol) if isinstance(protocol, (tuple, list)) else {protocol}


def object_identity(fs: Any, path: str, info: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What the store says identifies this version of the object: size and ETag (or the
    store's equivalent) when it has one."""
    info = fs.info(path) if info is None else info
    ident: dict[str, Any] = {"size": int(info["size"])}
    for key in ("ETag", "etag", "VersionId", "generation", "mtime"):
        value = info.get(key)
        if value is not None and key != "mtime":
            ident["etag" if key.lower() == "etag" else key.lower()] = str(value)
            if key.lower() == "etag":
                break
    return ident


def open_url(url: str, storage_options: Mapping[str, Any] | None = None, *,
             io_cache_bytes: int = DEFAULT_IO_CACHE_BYTES) -> tuple[IO[bytes], dict[str, Any]]:
    """Open a URL for reading: ``(file object, identity)``.

    A local file is opened directly (memory-mappable); anything else is a
    :class:`~milo_pack.blockfile.BlockFile` fetching ranges with the filesystem's ``cat_file``.
    """
    fs, path = filesystem(url, storage_options)
    if _is_local(fs):
        f = open(path, "rb")  # noqa: SIM115 - the caller closes it
        st = os.fstat(f.fileno())
        return f, {"size": st.st_size}
    info = fs.info(path)
    identity = object_identity(fs, path, info)

    def fetch(start: int, end: int) -> bytes:
        return bytes(fs.cat_file(path, start=start, end=end))

    source = BlockFile(fetch, identity["size"], cache_bytes=io_cache_bytes, name=url)
    return cast(IO[bytes], source), identity


def dump_to_url(obj: Any, url: str, storage_options: Mapping[str, Any] | None = None,
                **kwargs: Any) -> None:
    """Write ``obj`` to a URL atomically (see the module docstring)."""
    from .writer import dump_to_path, write

    fs, path = filesystem(url, storage_options)
    if _is_local(fs):
        dump_to_path(obj, path, **kwargs)
        return
    with tempfile.TemporaryDirectory(prefix="milo-upload-") as tmpdir:
        local = os.path.join(tmpdir, "model.milo")
        with open(local, "wb") as out:
            write(obj, out, spool_dir=tmpdir, **kwargs)
        protocols = _protocols(fs)
        if "memory" in protocols:  # one dict assignment: the whole object or nothing
            with open(local, "rb") as f:
                fs.pipe_file(path, f.read())
            return
        if protocols & _ATOMIC_PUT:
            fs.put_file(local, path)
            return
        # Elsewhere (sftp, hdfs, ftp...): upload under a temporary name beside the target,
        # then rename, so readers of the target never see a partial object.
        parent = fs._parent(path)
        tmp = f"{parent}/.milo-{uuid.uuid4().hex}.tmp" if parent else f".milo-{uuid.uuid4().hex}"
        try:
            fs.put_file(local, tmp)
            fs.mv(tmp, path)
        except BaseException:
            try:
                if fs.exists(tmp):
                    fs.rm(tmp)
            except Exception:  # noqa: BLE001 - the original error matters more
                pass
            raise
