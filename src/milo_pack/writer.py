"""``dump``: object graph -> manifest + sections -> canonical zip, atomically.

The walk plans sections without copying arrays; sections are then encoded one after another,
chunk by chunk, into the container's spool, and the manifest (which needs every section's size
and digest) is written first in the final file.  A dump to a path goes to a temporary file in the
target directory that is renamed into place only when complete.
"""

from __future__ import annotations

import os
import platform
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

import numpy as np

from . import __version__
from .codec import _WORKERS, SectionStore, write_section
from .container import ContainerWriter
from .engine import SaveContext
from .manifest import FORMAT_NAME, FORMAT_VERSION, dumps_json
from .registry import get_registry

__all__ = ["write", "dump_to_path", "writer_versions"]

_MAX_LEVEL = 22


def writer_versions(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Versions of the libraries that wrote the file (stable for one environment).

    ``extra`` adds the optional libraries the model used (handlers note them in
    ``SaveContext.versions``: xgboost, lightgbm).
    """
    import scipy
    import sklearn

    versions = {
        "milo_pack": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
    }
    versions.update(sorted((extra or {}).items()))
    return versions


def _check_level(level: Any) -> int:
    if type(level) is not int or not 0 <= level <= _MAX_LEVEL:
        raise ValueError(f"level must be an int from 0 (raw) to {_MAX_LEVEL}, not {level!r}")
    return level


Progress = Callable[[int, int], None]
"""``progress(done, total)``: decoded bytes of the sections written so far, of all of them."""


def write(obj: Any, out: IO[bytes], *, level: int = 3, metadata: Any = None,
          spool_dir: str | None = None, progress: Progress | None = None) -> None:
    """Write ``obj`` as a milo_pack archive to the binary file object ``out``.

    ``progress`` (optional) is called after each section with the decoded bytes written so far
    and in all (the command line's progress line).
    """
    level = _check_level(level)
    registry = get_registry()
    ctx = SaveContext(registry, level)
    meta_node = None
    if metadata is not None:
        meta_node = ctx.encode(metadata, "<metadata>")
    root = ctx.encode(obj, "")
    root = ctx.finalize(root)
    meta_node = ctx.finalize(meta_node)
    with ContainerWriter(out, spool_dir=spool_dir) as container:
        infos = []
        pool = ThreadPoolExecutor(_WORKERS, thread_name_prefix="milo-encode") if any(
            plan.length * plan.dtype.itemsize > (1 << 20) for plan in ctx.plans) else None
        total = sum(plan.length * plan.dtype.itemsize for plan in ctx.plans)
        done = 0
        try:
            for index, plan in enumerate(ctx.plans):
                sink = container.open_section(SectionStore.member_name(index))
                infos.append(write_section(sink, plan, level, pool))
                sink.close()
                done += plan.length * plan.dtype.itemsize
                if progress is not None:
                    progress(done, total)
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
        document = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "writer": writer_versions(ctx.versions),
            "metadata": meta_node,
            "root": root,
            "sections": [info.to_json() for info in infos],
        }
        container.finish(dumps_json(document))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def dump_to_path(obj: Any, path: str | os.PathLike[str], **kwargs: Any) -> None:
    """Write to a temporary file beside ``path`` and rename it into place when complete."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".milo-", suffix=".tmp")
    except OSError as exc:
        # Name the path the caller gave, not our temporary file.
        raise type(exc)(exc.errno, f"{exc.strerror} (writing into {directory!r})",
                        path) from None
    try:
        with os.fdopen(fd, "wb") as out:
            write(obj, out, spool_dir=directory, **kwargs)
        # mkstemp makes the file private (0600); give it the mode a plain open() would have,
        # or keep the mode of the file it replaces.
        try:
            mode = os.stat(path).st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o666 & ~_umask()
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
