"""Images and videos from files and data URLs, checked before any pixel is decoded where possible.

Every problem a user can cause (missing file, undecodable bytes, an image too large) is a `MediaError`,
a ValueError with a message fit to show as is.
"""

from __future__ import annotations

import base64
import binascii
import io
from pathlib import Path

from PIL import Image, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 4096 * 4096
DEFAULT_VIDEO_FPS = 2.0
DEFAULT_MAX_FRAMES = 8
IMAGE_FORMATS = ("PNG", "JPEG")


class MediaError(ValueError):
    """An image or video that cannot be used; the message says which and why."""


def _open_image(source: io.BytesIO | Path, label: str, max_pixels: int) -> Image.Image:
    try:
        image = Image.open(source)
        # Image.open reads only the header, so the size is known before the pixels are decoded.
        if image.width * image.height > max_pixels:
            raise MediaError(f"{label}: {image.width}x{image.height} pixels exceeds the limit of {max_pixels} pixels")
        if image.format not in IMAGE_FORMATS:
            raise MediaError(f"{label}: format {image.format} is not supported (use PNG or JPEG)")
        image.load()
    except MediaError:
        raise
    except UnidentifiedImageError:  # its message names only the file object, e.g. "<_io.BytesIO ...>"
        raise MediaError(f"{label}: not a decodable PNG or JPEG image (no image format recognised)") from None
    except (OSError, SyntaxError, Image.DecompressionBombError) as error:
        raise MediaError(f"{label}: not a decodable PNG or JPEG image ({error})") from None
    return image.convert("RGB")


def load_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """An RGB image from a PNG or JPEG file."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"image file not found: {path}")
    return _open_image(path, str(path), max_pixels)


def decode_image_bytes(data: bytes, label: str = "image", max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    return _open_image(io.BytesIO(data), label, max_pixels)


def decode_data_url(url: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """An RGB image from a `data:image/png;base64,...` (or jpeg) URL."""
    header, sep, payload = url.partition(",")
    if not sep or not header.startswith("data:") or not header.endswith(";base64"):
        raise MediaError("an image data URL must look like data:image/png;base64,<data>")
    media_type = header.removeprefix("data:").split(";")[0] or "text/plain"  # RFC 2397's default
    if not media_type.lower().startswith("image/"):  # media types are case-insensitive
        raise MediaError(f"the data URL holds {media_type}, not an image (send data:image/png or data:image/jpeg)")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise MediaError("the image data URL does not hold valid base64") from None
    return decode_image_bytes(data, f"image data URL ({media_type})", max_pixels)


def load_video(
    path: str | Path,
    fps: float = DEFAULT_VIDEO_FPS,
    max_frames: int = DEFAULT_MAX_FRAMES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[Image.Image]:
    """RGB frames sampled every 1/fps seconds from the start, at most `max_frames` of them."""
    import av

    path = Path(path)
    if fps <= 0 or max_frames < 1:
        raise MediaError(f"video sampling needs fps > 0 and max_frames >= 1 (got fps={fps}, max_frames={max_frames})")
    if not path.is_file():
        raise MediaError(f"video file not found: {path}")
    frames: list[Image.Image] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"{path}: holds no video stream")
            stream = container.streams.video[0]
            if stream.width * stream.height > max_pixels:
                raise MediaError(f"{path}: {stream.width}x{stream.height} frames exceed {max_pixels} pixels")
            next_time = 0.0
            for frame in container.decode(stream):
                seconds = frame.time if frame.time is not None else len(frames) / fps
                if seconds + 1e-6 < next_time:
                    continue
                frames.append(frame.to_image().convert("RGB"))
                next_time += 1.0 / fps
                if len(frames) == max_frames:
                    break
    except MediaError:
        raise
    except (av.error.FFmpegError, OSError) as error:
        raise MediaError(f"{path}: not a decodable video ({error})") from None
    if not frames:
        raise MediaError(f"{path}: no frames could be decoded")
    return frames
