"""Draw scenes with Pillow: a textured background per scene type, low-contrast clutter, and one
distinct shape per object kind, sized and jittered inside its grid cell."""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable

from PIL import Image, ImageDraw

from .scenes import COLORS, GRID, Scene, WorldObject

CANVAS = 128  # rendered size; processors resize to what each model wants

Box = tuple[float, float, float, float]
RGB = tuple[int, int, int]

BACKGROUNDS: dict[str, RGB] = {
    "kitchen": (226, 214, 196),
    "park": (188, 222, 168),
    "office": (206, 208, 214),
    "beach": (238, 226, 184),
    "bedroom": (222, 200, 228),
    "street": (176, 176, 176),
    "playroom": (236, 236, 206),
}


def _shade(color: RGB, factor: float) -> RGB:
    return tuple(max(0, min(255, int(c * factor))) for c in color)  # type: ignore[return-value]


def _detail(color: RGB) -> RGB:
    # details must stay visible on dark bodies too
    return (235, 235, 235) if sum(color) < 150 else _shade(color, 0.45)


def _pts(box: Box, *uv: tuple[float, float]) -> list[tuple[float, float]]:
    x0, y0, x1, y1 = box
    return [(x0 + u * (x1 - x0), y0 + v * (y1 - y0)) for u, v in uv]


def _sub(box: Box, u0: float, v0: float, u1: float, v1: float) -> Box:
    (a, b), (c, d) = _pts(box, (u0, v0), (u1, v1))
    return (a, b, c, d)


def _lw(box: Box, frac: float) -> int:
    return max(1, round((box[2] - box[0]) * frac))


def _cup(d: ImageDraw.ImageDraw, b: Box, f: RGB, k: RGB) -> None:
    d.ellipse(_sub(b, 0.55, 0.35, 0.95, 0.75), outline=f, width=_lw(b, 0.1))
    d.rectangle(_sub(b, 0.15, 0.2, 0.7, 0.95), fill=f, outline=k)


def _plate(d, b, f, k):
    d.ellipse(_sub(b, 0.0, 0.25, 1.0, 0.85), fill=f, outline=k)
    d.ellipse(_sub(b, 0.22, 0.38, 0.78, 0.72), outline=k, width=_lw(b, 0.05))


def _bottle(d, b, f, k):
    d.rectangle(_sub(b, 0.3, 0.4, 0.7, 1.0), fill=f, outline=k)
    d.rectangle(_sub(b, 0.42, 0.05, 0.58, 0.4), fill=f, outline=k)


def _bowl(d, b, f, k):
    d.pieslice(_sub(b, 0.0, -0.1, 1.0, 0.9), 0, 180, fill=f, outline=k)


def _kettle(d, b, f, k):
    d.polygon(_pts(b, (0.75, 0.55), (1.0, 0.3), (0.95, 0.6)), fill=f)
    d.ellipse(_sub(b, 0.1, 0.3, 0.8, 1.0), fill=f, outline=k)
    d.ellipse(_sub(b, 0.38, 0.15, 0.52, 0.32), fill=k)


def _clock(d, b, f, k):
    d.ellipse(_sub(b, 0.05, 0.05, 0.95, 0.95), fill=f, outline=k)
    w = _lw(b, 0.08)
    d.line(_pts(b, (0.5, 0.5), (0.5, 0.18)), fill=k, width=w)
    d.line(_pts(b, (0.5, 0.5), (0.75, 0.5)), fill=k, width=w)


def _tree(d, b, f, k):
    d.rectangle(_sub(b, 0.42, 0.7, 0.58, 1.0), fill=(110, 70, 30))
    d.polygon(_pts(b, (0.5, 0.0), (0.05, 0.75), (0.95, 0.75)), fill=f, outline=k)


def _bench(d, b, f, k):
    d.rectangle(_sub(b, 0.0, 0.15, 1.0, 0.3), fill=f, outline=k)
    d.rectangle(_sub(b, 0.0, 0.45, 1.0, 0.6), fill=f, outline=k)
    d.rectangle(_sub(b, 0.08, 0.6, 0.2, 0.95), fill=k)
    d.rectangle(_sub(b, 0.8, 0.6, 0.92, 0.95), fill=k)


def _flower(d, b, f, k):
    d.line(_pts(b, (0.5, 0.5), (0.5, 1.0)), fill=(40, 120, 40), width=_lw(b, 0.08))
    for ang in range(0, 360, 72):
        cx = 0.5 + 0.22 * math.cos(math.radians(ang))
        cy = 0.38 + 0.22 * math.sin(math.radians(ang))
        d.ellipse(_sub(b, cx - 0.17, cy - 0.17, cx + 0.17, cy + 0.17), fill=f, outline=k)
    d.ellipse(_sub(b, 0.4, 0.28, 0.6, 0.48), fill=(250, 230, 120))


def _kite(d, b, f, k):
    d.line(_pts(b, (0.5, 0.75), (0.35, 0.9), (0.6, 1.0)), fill=k, width=_lw(b, 0.05))
    d.polygon(_pts(b, (0.5, 0.0), (0.85, 0.35), (0.5, 0.8), (0.15, 0.35)), fill=f, outline=k)
    d.line(_pts(b, (0.15, 0.35), (0.85, 0.35)), fill=k)


def _bird(d, b, f, k):
    d.polygon(_pts(b, (0.0, 0.3), (0.5, 0.65), (1.0, 0.3), (0.5, 0.9)), fill=f, outline=k)


def _ball(d, b, f, k):
    d.ellipse(_sub(b, 0.1, 0.1, 0.9, 0.9), fill=f, outline=k)


def _book(d, b, f, k):
    d.rectangle(_sub(b, 0.15, 0.05, 0.85, 0.95), fill=f, outline=k)
    d.rectangle(_sub(b, 0.15, 0.05, 0.3, 0.95), fill=k)


def _lamp(d, b, f, k):
    d.line(_pts(b, (0.5, 0.4), (0.5, 0.9)), fill=k, width=_lw(b, 0.07))
    d.rectangle(_sub(b, 0.25, 0.88, 0.75, 1.0), fill=k)
    d.polygon(_pts(b, (0.3, 0.0), (0.7, 0.0), (0.9, 0.45), (0.1, 0.45)), fill=f, outline=k)


def _chair(d, b, f, k):
    d.polygon(
        _pts(
            b,
            (0.2, 0.0),
            (0.35, 0.0),
            (0.35, 0.5),
            (0.8, 0.5),
            (0.8, 1.0),
            (0.68, 1.0),
            (0.68, 0.64),
            (0.35, 0.64),
            (0.35, 1.0),
            (0.2, 1.0),
        ),
        fill=f,
        outline=k,
    )


def _laptop(d, b, f, k):
    d.rectangle(_sub(b, 0.15, 0.1, 0.85, 0.6), fill=k, outline=f, width=_lw(b, 0.08))
    d.polygon(_pts(b, (0.1, 0.65), (0.9, 0.65), (1.0, 0.85), (0.0, 0.85)), fill=f, outline=k)


def _umbrella(d, b, f, k):
    d.line(_pts(b, (0.5, 0.45), (0.5, 0.95), (0.38, 0.95)), fill=k, width=_lw(b, 0.06))
    d.pieslice(_sub(b, 0.0, 0.05, 1.0, 0.85), 180, 360, fill=f, outline=k)


def _boat(d, b, f, k):
    d.line(_pts(b, (0.5, 0.05), (0.5, 0.65)), fill=k, width=_lw(b, 0.05))
    d.polygon(_pts(b, (0.52, 0.08), (0.9, 0.6), (0.52, 0.6)), fill=(245, 245, 245), outline=k)
    d.polygon(_pts(b, (0.0, 0.65), (1.0, 0.65), (0.8, 0.95), (0.2, 0.95)), fill=f, outline=k)


def _fish(d, b, f, k):
    d.polygon(_pts(b, (0.65, 0.5), (1.0, 0.2), (1.0, 0.8)), fill=f, outline=k)
    d.ellipse(_sub(b, 0.0, 0.25, 0.75, 0.75), fill=f, outline=k)
    d.ellipse(_sub(b, 0.15, 0.4, 0.25, 0.5), fill=k)


def _shell(d, b, f, k):
    d.pieslice(_sub(b, 0.0, 0.1, 1.0, 1.1), 180, 360, fill=f, outline=k)
    for u in (0.2, 0.35, 0.5, 0.65, 0.8):
        d.line(_pts(b, (0.5, 0.6), (u, 0.15 + abs(u - 0.5) * 0.5)), fill=k)


def _bucket(d, b, f, k):
    d.arc(_sub(b, 0.15, 0.0, 0.85, 0.6), 180, 360, fill=k, width=_lw(b, 0.06))
    d.polygon(_pts(b, (0.05, 0.3), (0.95, 0.3), (0.8, 1.0), (0.2, 1.0)), fill=f, outline=k)


def _bed(d, b, f, k):
    d.rectangle(_sub(b, 0.0, 0.15, 0.15, 0.9), fill=k)
    d.rectangle(_sub(b, 0.1, 0.45, 1.0, 0.75), fill=f, outline=k)
    d.rectangle(_sub(b, 0.88, 0.6, 1.0, 0.9), fill=k)


def _pillow(d, b, f, k):
    d.rounded_rectangle(_sub(b, 0.0, 0.25, 1.0, 0.75), radius=_lw(b, 0.2), fill=f, outline=k)


def _moon(d, b, f, k):
    outer = [
        (0.5 + 0.45 * math.cos(math.radians(a)), 0.5 + 0.45 * math.sin(math.radians(a))) for a in range(60, 301, 15)
    ]
    inner = [
        (0.72 + 0.38 * math.cos(math.radians(a)), 0.5 + 0.38 * math.sin(math.radians(a))) for a in range(240, 119, -15)
    ]
    d.polygon(_pts(b, *outer, *inner), fill=f, outline=k)


def _car(d, b, f, k):
    d.polygon(_pts(b, (0.25, 0.3), (0.7, 0.3), (0.85, 0.5), (0.1, 0.5)), fill=f, outline=k)
    d.rectangle(_sub(b, 0.0, 0.5, 1.0, 0.78), fill=f, outline=k)
    for u in (0.22, 0.78):
        d.ellipse(_sub(b, u - 0.13, 0.66, u + 0.13, 0.92), fill=(30, 30, 30))


def _house(d, b, f, k):
    d.rectangle(_sub(b, 0.15, 0.45, 0.85, 1.0), fill=f, outline=k)
    d.polygon(_pts(b, (0.0, 0.48), (0.5, 0.05), (1.0, 0.48)), fill=k)
    d.rectangle(_sub(b, 0.42, 0.7, 0.58, 1.0), fill=k)


def _cone(d, b, f, k):
    d.polygon(_pts(b, (0.5, 0.0), (0.85, 0.88), (0.15, 0.88)), fill=f, outline=k)
    d.line(_pts(b, (0.33, 0.45), (0.67, 0.45)), fill=(245, 245, 245), width=_lw(b, 0.08))
    d.rectangle(_sub(b, 0.05, 0.88, 0.95, 1.0), fill=k)


def _sign(d, b, f, k):
    d.rectangle(_sub(b, 0.45, 0.5, 0.55, 1.0), fill=(90, 90, 90))
    octagon = [
        (0.5 + 0.4 * math.cos(math.radians(a + 22.5)), 0.4 + 0.4 * math.sin(math.radians(a + 22.5)))
        for a in range(0, 360, 45)
    ]
    d.polygon(_pts(b, *octagon), fill=f, outline=k)
    d.line(_pts(b, (0.3, 0.4), (0.7, 0.4)), fill=(245, 245, 245), width=_lw(b, 0.08))


def _star(d, b, f, k):
    pts = []
    for i in range(10):
        r = 0.5 if i % 2 == 0 else 0.2
        a = math.radians(-90 + 36 * i)
        pts.append((0.5 + r * math.cos(a), 0.52 + r * math.sin(a)))
    d.polygon(_pts(b, *pts), fill=f, outline=k)


def _box(d, b, f, k):
    d.rectangle(_sub(b, 0.08, 0.08, 0.92, 0.92), fill=f, outline=k, width=_lw(b, 0.05))
    d.line(_pts(b, (0.08, 0.08), (0.92, 0.92)), fill=k, width=_lw(b, 0.05))
    d.line(_pts(b, (0.92, 0.08), (0.08, 0.92)), fill=k, width=_lw(b, 0.05))


SHAPES: dict[str, Callable[[ImageDraw.ImageDraw, Box, RGB, RGB], None]] = {
    "cup": _cup,
    "plate": _plate,
    "bottle": _bottle,
    "bowl": _bowl,
    "kettle": _kettle,
    "clock": _clock,
    "tree": _tree,
    "bench": _bench,
    "flower": _flower,
    "kite": _kite,
    "bird": _bird,
    "ball": _ball,
    "book": _book,
    "lamp": _lamp,
    "chair": _chair,
    "laptop": _laptop,
    "umbrella": _umbrella,
    "boat": _boat,
    "fish": _fish,
    "shell": _shell,
    "bucket": _bucket,
    "bed": _bed,
    "pillow": _pillow,
    "moon": _moon,
    "car": _car,
    "house": _house,
    "cone": _cone,
    "sign": _sign,
    "star": _star,
    "box": _box,
}


def _background(draw: ImageDraw.ImageDraw, scene_type: str, rng: random.Random) -> None:
    base = BACKGROUNDS[scene_type]
    line = _shade(base, 0.9)
    step = rng.randint(10, 16)
    if scene_type in ("kitchen", "playroom"):  # tiles
        for x in range(0, CANVAS, step):
            draw.line([(x, 0), (x, CANVAS)], fill=line)
            draw.line([(0, x), (CANVAS, x)], fill=line)
    elif scene_type == "park":  # grass strokes
        grass = _shade(base, 0.85)
        for _ in range(120):
            x, y = rng.randrange(CANVAS), rng.randrange(CANVAS)
            draw.line([(x, y), (x + rng.randint(-2, 2), y - rng.randint(2, 5))], fill=grass)
    elif scene_type == "office":  # desk planks
        for y in range(0, CANVAS, step):
            draw.line([(0, y), (CANVAS, y)], fill=line)
    elif scene_type == "beach":  # wave marks
        for y in range(4, CANVAS, step):
            for x in range(0, CANVAS, 12):
                draw.arc((x, y, x + 12, y + 6), 180, 360, fill=line)
    elif scene_type == "bedroom":  # dotted wallpaper
        spacing = range(3, CANVAS, step // 2 + 2)
        draw.point([(x, y) for y in spacing for x in spacing], fill=_shade(base, 0.8))
    else:  # street: lane marks
        for y in (CANVAS // 3, 2 * CANVAS // 3):
            for x in range(0, CANVAS, 14):
                draw.line([(x, y), (x + 6, y)], fill=(215, 215, 215), width=2)


def _clutter(draw: ImageDraw.ImageDraw, scene_type: str, rng: random.Random) -> None:
    base = BACKGROUNDS[scene_type]
    for _ in range(rng.randint(8, 20)):
        x, y = rng.randrange(CANVAS), rng.randrange(CANVAS)
        tone = _shade(base, rng.uniform(0.65, 0.85))
        if rng.random() < 0.5:
            draw.ellipse((x, y, x + rng.randint(1, 3), y + rng.randint(1, 3)), fill=tone)
        else:
            draw.line([(x, y), (x + rng.randint(-5, 5), y + rng.randint(-5, 5))], fill=tone)


def object_box(obj: WorldObject, rng: random.Random) -> Box:
    cell = CANVAS / GRID
    side = cell * (0.55 if obj.size == "small" else 0.88) * rng.uniform(0.93, 1.0)
    slack = cell - side
    x0 = obj.cell[1] * cell + slack * rng.uniform(0.25, 0.75)
    y0 = obj.cell[0] * cell + slack * rng.uniform(0.25, 0.75)
    return (x0, y0, x0 + side, y0 + side)


@functools.lru_cache(maxsize=32)
def _backdrop(scene_type: str, style_seed: int) -> Image.Image:
    """The background texture and clutter of a scene, which its type and style seed alone decide: the
    frames of a video (and the two of a warm-up frame pair) share one, drawn once. Never drawn on."""
    rng = random.Random(style_seed)
    image = Image.new("RGB", (CANVAS, CANVAS), BACKGROUNDS[scene_type])
    draw = ImageDraw.Draw(image)
    _background(draw, scene_type, rng)
    _clutter(draw, scene_type, rng)
    return image


def render_scene(scene: Scene) -> Image.Image:
    """The scene as a CANVAS x CANVAS RGB image; the same scene always renders to the same pixels."""
    image = _backdrop(scene.scene_type, scene.style_seed).copy()
    draw = ImageDraw.Draw(image)
    for obj in scene.reading_order():
        fill = COLORS[obj.color]
        SHAPES[obj.kind](draw, object_box(obj, random.Random(f"{scene.style_seed}/{obj.kind}")), fill, _detail(fill))
    return image
