"""The target the pipeline, CLI and server tests run on (no tests here).

The shipped world-llava-tiny when this checkout has it; otherwise a random-weight model of the same
recipe with the real world tokenizer, chat template and LlavaProcessor, saved to a temporary directory,
so every code path (processor, chat template, images) is the shipped one's.
"""

from __future__ import annotations

import atexit
import functools
import io
import shutil
import tempfile
from pathlib import Path

from PIL import Image

from specflash.world.models import shipped_path
from specflash.world.render import render_scene
from specflash.world.scenes import sample_scene

SHIPPED = shipped_path("world-llava-tiny")
HAS_SHIPPED = (SHIPPED / "model.safetensors").is_file()


@functools.cache
def target_dir() -> Path:
    if HAS_SHIPPED:
        return SHIPPED
    from specflash.world.build import new_model

    out = Path(tempfile.mkdtemp(prefix="specflash-world-llava-"))
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    new_model("world-llava-tiny", "tiny", out, seed=0).save_pretrained(out)
    return out


def target_arg() -> str | None:
    """What to pass as `target`: None (the embedded default) when it is shipped."""
    return None if HAS_SHIPPED else str(target_dir())


def scene_image(seed: int = 0) -> Image.Image:
    import random

    return render_scene(sample_scene(random.Random(seed)))


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_video(path: Path, frames: int = 30, rate: int = 10) -> Path:
    """An mp4 of `frames` gray frames at `rate` fps; frame i has gray level 8 i."""
    import av
    import numpy as np

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=rate)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 8, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
