"""Atomic file output and label-map image I/O.

Outputs are written to a temporary file in the destination folder and renamed
into place, so an interrupted run never leaves a half-written file behind.

Label maps (instance / semantic ids) are stored as PNG without ever going through
8 bits: ids < 65536 as 16-bit greyscale; larger ids as 8-bit RGBA whose four
bytes are the little-endian int32 id. :func:`read_label_png` reads both (and plain
8-bit greyscale, as some datasets ship semantic maps that way).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image

from .errors import SdfsegError


def _file_mode() -> int:
    """Permissions of a new file under this process's umask (``mkstemp`` alone gives 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _file_mode()

_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp(\.[^.]+)?$")
"""Names of :func:`atomic_path` temporaries: ``.<stem>.<8 random chars>.tmp<suffix>``."""


def is_temporary(name: str) -> bool:
    """True for the name of a temporary file :func:`atomic_path` writes (left behind only by a kill)."""
    return _TEMPORARY.match(name) is not None


def remove_temporaries(folder: str | os.PathLike) -> int:
    """Delete the :func:`atomic_path` temporaries under ``folder`` (recursively) that a killed process
    left behind; returns how many. Call it only while no other process writes there (the run lock)."""
    n = 0
    for f in Path(folder).rglob(".*.tmp*"):
        if f.is_file() and is_temporary(f.name):
            f.unlink(missing_ok=True)
            n += 1
    return n


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    The temporary keeps the destination's suffix so writers that pick a format
    from the extension (trimesh, PIL) still work. A folder that cannot be written
    is a one-line :class:`SdfsegError` naming it.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    except OSError as exc:
        raise SdfsegError(f"{path}: cannot write here ({exc.strerror or exc})") from None
    os.fchmod(fd, _FILE_MODE)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def staged_folder(out: Path, force: bool) -> Iterator[Path]:
    """Yield a staging folder that replaces ``out`` on success and is deleted on failure.

    Refuses (:class:`SdfsegError`) when ``out`` is a file, or a non-empty folder and not ``force``.
    """
    if out.exists() and not out.is_dir():
        raise SdfsegError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise SdfsegError(f"{out}: folder is not empty (use --force to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = out.parent / f".{out.name}.partial-{os.getpid()}"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir()
    try:
        yield stage
        trash = out.parent / f".{out.name}.old-{os.getpid()}"
        if out.exists():
            os.replace(out, trash)
        os.replace(stage, out)
        if trash.exists():
            shutil.rmtree(trash)
    finally:
        if stage.exists():
            shutil.rmtree(stage)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def npz_bytes(**arrays: np.ndarray) -> bytes:
    """A compressed ``.npz`` archive of ``arrays`` with fixed member timestamps (byte-deterministic,
    unlike ``np.savez_compressed``)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, mode="w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key, val in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asanyarray(val), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


def save_npz_atomic(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Save arrays to a compressed ``.npz`` atomically (byte-deterministic)."""
    write_bytes_atomic(path, npz_bytes(**arrays))


def save_image_atomic(path: str | os.PathLike, image: np.ndarray) -> None:
    """Save an image atomically. Float images in [0, 1] become 8-bit; uint8/uint16 as is."""
    arr = np.asarray(image)
    if arr.dtype.kind == "f":
        arr = (np.clip(np.nan_to_num(arr), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    write_bytes_atomic(path, buf.getvalue())


def encode_label_png(labels: np.ndarray) -> bytes:
    """Encode an integer label map ``[H, W]`` (ids >= 0) as PNG bytes (16-bit or 32-bit RGBA)."""
    lab = np.asarray(labels)
    if lab.ndim != 2 or lab.dtype.kind not in "iu":
        raise ValueError(f"label map must be a 2D integer array, got {lab.dtype} {lab.shape}")
    if lab.size and lab.min() < 0:
        raise ValueError("label ids must be >= 0")
    buf = io.BytesIO()
    if lab.size == 0 or int(lab.max()) < 65536:
        Image.fromarray(lab.astype(np.uint16)).save(buf, format="PNG")
    else:
        if int(lab.max()) > np.iinfo(np.int32).max:
            raise ValueError("label ids must fit in int32")
        rgba = lab.astype("<i4").view(np.uint8).reshape(lab.shape[0], lab.shape[1], 4)
        Image.fromarray(np.ascontiguousarray(rgba), mode="RGBA").save(buf, format="PNG")
    return buf.getvalue()


def save_label_png(path: str | os.PathLike, labels: np.ndarray) -> None:
    """Save an integer label map ``[H, W]`` atomically (see :func:`encode_label_png`)."""
    write_bytes_atomic(path, encode_label_png(labels))


def read_label_png(path: str | os.PathLike) -> np.ndarray:
    """Read a label map written by :func:`save_label_png` (or 8/16-bit greyscale) as int32 ``[H, W]``."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            mode = im.mode
            arr = np.array(im)
    except FileNotFoundError:
        raise SdfsegError(f"{path}: file not found (expected a label PNG)") from None
    except OSError as exc:
        raise SdfsegError(f"{path}: cannot read label image ({exc})") from None
    if mode == "RGBA":
        return np.ascontiguousarray(arr).view("<i4")[..., 0].astype(np.int32)
    if arr.ndim != 2:
        raise SdfsegError(f"{path}: expected a single-channel (8/16-bit) or RGBA-encoded label PNG, got mode {mode}")
    return arr.astype(np.int32)


def read_rgb8(path: str | os.PathLike) -> np.ndarray:
    """Read an RGB image as uint8 ``[H, W, 3]`` (8-bit images exactly as stored)."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise SdfsegError(f"{path}: file not found (expected an RGB image)") from None
    except OSError as exc:
        raise SdfsegError(f"{path}: cannot read image ({exc})") from None
    return arr


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(height, width)`` of an image from its header (the pixels are not decoded)."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            return int(im.size[1]), int(im.size[0])
    except FileNotFoundError:
        raise SdfsegError(f"{path}: file not found (expected an RGB image)") from None
    except OSError as exc:
        raise SdfsegError(f"{path}: cannot read image ({exc})") from None


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an RGB image as float32 ``[H, W, 3]`` in [0, 1]."""
    return read_rgb8(path).astype(np.float32) / np.float32(255.0)
