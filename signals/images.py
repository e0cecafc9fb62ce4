"""Load an image reference from an event: a file path, ``file://`` URL, base64 / ``data:`` URI,
an ``http(s)`` URL on an allow-listed host, or an object-store URL (``s3://``, ``gs://``,
``az://``) read through fsspec with the provider's standard credential chain, all with the
same size and time limits.

The policy is decided by the caller: the Kafka worker and the guardrail API refuse local paths
(an event must not make them read their own disk), replay and the CLI allow them. Where local
paths are refused, a string is judged by its form alone, never by whether a file of that name
exists: the answer must not tell a client what is on the server's disk.

A decoded image is bounded too: one larger than ``max_decoded_pixels`` is scaled down while it
is decoded (JPEG through ``Image.draft``, which decodes at 1/2, 1/4 or 1/8 of the size straight
away; other formats are reduced right after decoding, in their own compact mode). The models
look at 224x224 pixels, so nothing they see is lost, and a micro-batch of tiny files that
decode to huge pictures (a 5 KB 1-bit PNG of 6300x6300 pixels is 160 MB as RGB) cannot
exhaust memory.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import os
import re
import stat
import time
import urllib.request
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from PIL import Image

from signals.errors import ImageError

__all__ = ["DEFAULT_MAX_DECODED_PIXELS", "NOT_INLINE", "ImagePolicy", "bounded_size", "load_image"]

_BASE64 = re.compile(r"[A-Za-z0-9+/\s]+={0,2}")
_MIN_BASE64 = 256  # longer base64-looking strings are never taken for paths
NOT_INLINE = "not an inline image (base64 or data: URI), and local image files are not allowed"
"""The one answer for any string that is neither valid base64 nor an allowed URL where local
paths are refused, whether or not a file of that name exists."""
DEFAULT_MAX_DECODED_PIXELS = 1_000_000
"""Decoded images are scaled down to at most this many pixels (about 4 MB as RGB in Pillow)."""


@dataclass(frozen=True)
class ImagePolicy:
    """Where images may come from and how large they may be."""

    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000  # larger images are refused before they are decoded
    max_decoded_pixels: int = DEFAULT_MAX_DECODED_PIXELS  # larger ones are scaled down to it
    allowed_schemes: frozenset[str] = frozenset({"file", "data", "https"})
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)
    fetch_timeout_s: float = 5.0  # the whole fetch, not each read (a slow drip is cut off)
    allow_local_files: bool = True  # regular files only: never devices or FIFOs
    allowed_buckets: frozenset[str] = field(default_factory=frozenset)  # empty: any bucket
    storage_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Per object-store scheme, options for its fsspec filesystem (``{"s3": {"endpoint_url":
    ...}}``); credentials come from the provider's own chain (environment, profile, metadata)."""


_OBJECT_STORES = {
    "s3": ("s3fs", "s3fs"),
    "gs": ("gcsfs", "gcsfs"),
    "gcs": ("gcsfs", "gcsfs"),
    "az": ("adlfs", "adlfs"),
    "abfs": ("adlfs", "adlfs"),
}
"""Object-store scheme → (module fsspec needs, the pip package that provides it)."""
_EXTRAS = {"s3fs": "s3", "gcsfs": "gcs", "adlfs": "azure"}


def load_image(ref: str, policy: ImagePolicy | None = None) -> Image.Image:
    """Decode ``ref`` into an RGB image of at most ``policy.max_decoded_pixels`` pixels, or
    raise :class:`ImageError` saying why."""
    policy = policy or ImagePolicy()
    data = _read_bytes(ref.strip(), policy)
    if len(data) > policy.max_bytes:
        raise ImageError(f"image of {len(data)} bytes exceeds {policy.max_bytes}")
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if width * height > policy.max_pixels:
                raise ImageError(f"image of {width}x{height} pixels exceeds {policy.max_pixels}")
            return _decode_bounded(img, policy.max_decoded_pixels)
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(f"image rejected as a decompression bomb: {exc}") from exc
    except Exception as exc:
        raise ImageError(f"not a readable image: {type(exc).__name__}: {exc}") from exc


def bounded_size(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """The size an image of ``width`` x ``height`` is decoded to: unchanged when it has at most
    ``max_pixels`` pixels, else scaled down, aspect kept, to at most ``max_pixels``."""
    if width * height <= max_pixels:
        return width, height
    scale = math.sqrt(max_pixels / (width * height))
    return max(1, math.floor(width * scale)), max(1, math.floor(height * scale))


def _decode_bounded(img: Image.Image, max_pixels: int) -> Image.Image:
    """Decode ``img`` into RGB no larger than ``max_pixels``, never holding a full-size RGB copy
    of a large image: JPEG decodes at a reduced scale, other formats are reduced in their
    decoded mode (1 byte a pixel for 1-bit and grey images) before the conversion to RGB."""
    target = bounded_size(*img.size, max_pixels)
    if target == img.size:
        return img.convert("RGB")
    img.draft("RGB", target)  # JPEG only: the DCT scales (to at least target) while decoding
    img.load()
    if img.mode == "1":
        img = img.convert("L")  # same size in memory; resizing "1" would drop to nearest
    elif img.mode in ("P", "PA"):
        img = img.convert("RGBA" if "transparency" in img.info or img.mode == "PA" else "RGB")
    if img.size != target:
        img = img.resize(target, Image.Resampling.BICUBIC, reducing_gap=2.0)
    return img.convert("RGB")


def _read_bytes(ref: str, policy: ImagePolicy) -> bytes:
    parts = urlsplit(ref)
    scheme = parts.scheme.lower()
    if scheme == "data":
        if "data" not in policy.allowed_schemes:
            raise ImageError("data: URIs are not allowed")
        header, _, payload = ref.partition(",")
        if ";base64" not in header:
            raise ImageError("data: URI must be base64-encoded")
        return _b64(payload)
    if scheme in ("http", "https"):
        return _fetch(ref, scheme, parts.hostname or "", policy)
    if scheme in _OBJECT_STORES:
        return _read_object(ref, scheme, parts.netloc, policy)
    if scheme not in ("", "file"):
        raise ImageError(f"image URL scheme {scheme!r} is not allowed")
    if not policy.allow_local_files or "file" not in policy.allowed_schemes:
        return _inline_only(ref, scheme)
    if (
        scheme == ""
        and _BASE64.fullmatch(ref)
        and (len(ref) >= _MIN_BASE64 or not _is_existing_path(ref))
    ):
        return _b64(ref)  # checked before paths: JPEG base64 starts with "/9j/"
    path = Path(unquote(parts.path) if scheme == "file" else ref)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat on the open descriptor
        # leaves no gap between the check and the read.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise ImageError(f"cannot read image file {_short(str(path))}: {reason}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):  # /dev/zero would be read until memory runs out
            raise ImageError(f"image path {_short(str(path))} is not a regular file")
        if info.st_size > policy.max_bytes:
            raise ImageError(f"image file of {info.st_size} bytes exceeds {policy.max_bytes}")
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as handle:
        return handle.read(policy.max_bytes + 1)  # a file may grow after the check


def _inline_only(ref: str, scheme: str) -> bytes:
    """Where local paths are refused: base64 if the string is valid base64, else one error.

    Decided by the string's form only. Asking the disk (``Path.exists``) would answer "no such
    file" and "file refused" differently, an oracle on which paths exist on the server.
    """
    if scheme == "" and _BASE64.fullmatch(ref):
        try:
            return base64.b64decode("".join(ref.split()), validate=True)
        except (binascii.Error, ValueError):
            pass
    raise ImageError(NOT_INLINE)


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} chars)"


def _b64(payload: str) -> bytes:
    try:
        return base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageError(f"invalid base64 image: {exc}") from exc


def _check_url(scheme: str, host: str, policy: ImagePolicy) -> None:
    if scheme not in policy.allowed_schemes:
        raise ImageError(f"image URL scheme {scheme!r} is not allowed")
    if not _host_allowed(host.lower(), policy.allowed_hosts):
        raise ImageError(f"image host {host!r} is not on the allow-list")


def _host_allowed(host: str, allowed: frozenset[str]) -> bool:
    """Exact names, or ``*.example.com`` for any subdomain (not example.com itself)."""
    if host in allowed:
        return True
    return any(
        pattern.startswith("*.") and host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
        for pattern in allowed
    )


_STORE_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="telltale-image-store")


def _read_object(ref: str, scheme: str, bucket: str, policy: ImagePolicy) -> bytes:
    """Read an object-store image through fsspec, within the policy's size and time limits."""
    if scheme not in policy.allowed_schemes:
        raise ImageError(f"image URL scheme {scheme!r} is not allowed")
    if policy.allowed_buckets and bucket not in policy.allowed_buckets:
        raise ImageError(f"bucket {bucket!r} is not on the allow-list")
    module, package = _OBJECT_STORES[scheme]
    try:
        __import__(module)
        import fsspec
    except ImportError as exc:
        raise ImageError(
            f"{scheme}:// images need the {package} package: pip install {package} "
            f"(or the telltale[{_EXTRAS[package]}] extra)"
        ) from exc
    options = dict(policy.storage_options.get(scheme, {}))

    def read() -> bytes:
        fs = fsspec.filesystem(scheme, **options)
        size = fs.size(ref)
        if size is not None and size > policy.max_bytes:
            raise ImageError(f"image object of {size} bytes exceeds {policy.max_bytes}")
        with fs.open(ref, "rb") as handle:
            data: bytes = handle.read(policy.max_bytes + 1)
        return data

    # fsspec's own timeouts differ per provider: the policy's deadline bounds the whole read.
    future = _STORE_POOL.submit(read)
    try:
        return future.result(timeout=policy.fetch_timeout_s)
    except FutureTimeout as exc:
        future.cancel()
        raise ImageError(
            f"image from {scheme}://{bucket} took longer than {policy.fetch_timeout_s}s"
        ) from exc
    except ImageError:
        raise
    except FileNotFoundError as exc:
        raise ImageError(f"no image object at {_short(ref)}") from exc
    except Exception as exc:  # credentials, permissions, network: say which and where
        raise ImageError(
            f"cannot read image from {scheme}://{bucket}: "
            f"{type(exc).__name__}: {_short(str(exc), 200)}"
        ) from exc


class _AllowListedRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to where the policy would let the first request go."""

    def __init__(self, policy: ImagePolicy) -> None:
        super().__init__()
        self._policy = policy

    def redirect_request(
        self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        parts = urlsplit(newurl)
        _check_url(parts.scheme.lower(), parts.hostname or "", self._policy)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _fetch(url: str, scheme: str, host: str, policy: ImagePolicy) -> bytes:
    _check_url(scheme, host, policy)
    opener = urllib.request.build_opener(_AllowListedRedirects(policy))
    request = urllib.request.Request(url, headers={"User-Agent": "telltale"})  # noqa: S310
    deadline = time.monotonic() + policy.fetch_timeout_s
    chunks: list[bytes] = []
    size = 0
    try:
        with opener.open(request, timeout=policy.fetch_timeout_s) as response:
            # read1 returns what one socket read gives, so a server that drips bytes cannot
            # stretch the fetch past the deadline (each read still waits up to the timeout).
            while size <= policy.max_bytes:
                if time.monotonic() > deadline:
                    raise ImageError(
                        f"image from {host} took longer than {policy.fetch_timeout_s}s"
                    )
                chunk: bytes = response.read1(min(65_536, policy.max_bytes + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
    except OSError as exc:
        raise ImageError(f"cannot fetch image from {host}: {exc}") from exc
    if size > policy.max_bytes:
        raise ImageError(f"image at {host} exceeds {policy.max_bytes} bytes")
    return b"".join(chunks)


def _is_existing_path(ref: str) -> bool:
    """Whether a short base64-looking string names a file (``a.png`` matches both); asked only
    where local files are allowed (replay, the CLI: the operator's own disk)."""
    try:
        return Path(ref).exists()
    except (OSError, ValueError):
        return False
