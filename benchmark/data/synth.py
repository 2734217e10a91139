"""The built-in synthetic change-detection dataset (`cdbench synth`).

A procedurally generated, bi-temporal "aerial" dataset in the prepared layout
(`benchmark.data.layout`), so that every stage of the suite can run, and be tested, without the
real datasets. It is modelled on what makes LEVIR-CD (Chen & Shi, Remote Sensing 12(10):1662,
2020) and CDD (Lebedev et al., ISPRS Archives XLII-2, 2018) hard;
no code of either dataset's authors was involved (they
publish data, not generators).

A scene (shared by both dates) is a patchwork of fields (warped Voronoi parcels with
low-frequency brightness variation, grain and crop rows), straight roads, clusters of
buildings (rotated rectangles of varied size and roof colour, gable or flat roofs, each
casting a shadow towards the bottom-right) and groups of trees (round crowns with shadows).

Change, labelled 255 (the label is in the frame of date A, the reference):
- buildings that appear in B (new development comes in clusters),
- buildings demolished by B (bare rubble or the field shows through),
- a road built between the dates (about one scene in four).
Only the object's footprint is labelled; its cast shadow is NOT change, as in LEVIR-CD, whose
labels mark the building only. A network must learn to ignore the shadow that comes with a
new building.

Nuisance, never labelled:
- season: fields change crop state between the dates (green crop -> ripe, stubble,
  ploughed soil, ...), vegetation and tree crowns shift hue, roofs and roads change colour
  slightly;
- illumination: per-date brightness, per-channel gain and offset, gamma, sometimes a thin
  haze of varying density; shadow length differs with the sun's elevation;
- sensor: Gaussian blur (sigma 0.3..1.0) and Gaussian noise (sigma 1.5..4.5 grey levels) per
  date;
- misregistration: B is shifted by 0.25..2 pixels in a random direction (bilinear), like a
  residual co-registration error, so every edge in the scene shows up in a plain difference.

This makes plain pixel differencing fail: `pixel_difference_baseline` (the best F1 over all
thresholds of the Euclidean norm of the per-pixel RGB difference, threshold chosen on the test
set itself) is 0.28 for the default config (seed 0), below 0.5 by design. The changed objects
stay sharp, structured and clearly visible: a small U-Net (16-32-64 channels) trained for 300
CPU steps on 64x64 crops of 160 training pairs reached F1 0.75 on the same test set (best
threshold; 0.71 at sigmoid 0.5) in about 80 s.

Determinism: each pair has its own random generator, seeded from (seed, split, index), so the
files are byte-identical for a seed whatever the number of worker processes.

Departures from the real datasets, deliberate: colours and shapes are stylised; changes are
buildings and roads only (no other land-cover change is labelled); scenes are 256x256 by
default, like the tiles the networks train on.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw

from benchmark.data.baseline import (
    MAX_SQUARED_DIFFERENCE,
    DifferenceCounts,
    SparseCounts,
    pair_counts,
    squared_differences,
)
from benchmark.data.cache import write_caches
from benchmark.data.datasets.synthetic import SYNTHETIC
from benchmark.data.layout import (
    SPLITS,
    check_replaceable,
    count_cross_split_duplicates,
    staging_dir,
    summarise_split,
    write_manifest,
    write_pair,
    write_png,
)
from benchmark.data.workers import map_in_workers
from benchmark.progress import progress_bar

if TYPE_CHECKING:  # a type only: benchmark.config reads the dataset registry of this package
    from benchmark.config import SynthConfig

GENERATOR_VERSION = 1
"""Bumped whenever a change to this module changes the generated pixels."""

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
"""Each split's number in the seed of a pair's random generator."""

WORKERS = 2
"""Default number of generator processes (the suite's machines have two cores)."""

SHADOW_DIRECTION = (1 / math.sqrt(2), 1 / math.sqrt(2))
"""(x, y) direction in which every shadow falls: towards the bottom-right (sun in the
north-west)."""

# Ground states of a field: (RGB, strength of crop rows, vegetated). Fields change state
# between the dates (season, harvest, ploughing): the largest nuisance of the dataset.
GROUND_RGB = np.array(
    [
        (88, 122, 58),  # meadow
        (72, 112, 46),  # green crop
        (128, 150, 78),  # young crop
        (184, 164, 98),  # ripe crop
        (170, 152, 112),  # stubble
        (118, 92, 70),  # ploughed soil
        (150, 142, 96),  # dry grass
        (165, 146, 122),  # bare soil
    ],
    dtype=np.float32,
)
GROUND_ROWS = np.array([0.0, 1.0, 1.0, 0.6, 0.8, 1.3, 0.0, 0.3], dtype=np.float32)
GROUND_VEGETATED = np.array([1, 1, 1, 0, 0, 0, 1, 0], dtype=bool)

ROOF_RGB = np.array(
    [
        (172, 86, 62),  # terracotta
        (150, 70, 55),  # dark red tile
        (84, 84, 90),  # dark grey
        (176, 176, 170),  # concrete
        (214, 214, 208),  # white membrane
        (92, 112, 134),  # blue-grey metal
        (134, 104, 84),  # brown
        (110, 132, 120),  # green metal
    ],
    dtype=np.float32,
)

TREE_RGB = np.array((46, 74, 36), dtype=np.float32)
RUBBLE_RGB = np.array((158, 146, 128), dtype=np.float32)
SHADOW_FACTOR = np.array((0.42, 0.46, 0.58), dtype=np.float32)
"""Shadowed ground keeps this fraction of each channel (sky light makes shadows bluish)."""


@dataclass
class Building:
    """A rotated rectangle; `in_a` / `in_b` say in which dates it stands."""

    corners: np.ndarray  # (4, 2) x, y
    centre: tuple[float, float]
    angle: float
    height: float  # shadow length in pixels at the reference sun elevation
    roof: np.ndarray  # (3,) RGB
    gable: bool
    in_a: bool
    in_b: bool
    rubble: bool  # demolished: rubble (True) or the field (False) shows in B


@dataclass
class Road:
    point: tuple[float, float]
    direction: tuple[float, float]
    width: float
    in_a: bool


@dataclass
class Scene:
    """Everything two dates of one place share."""

    size: int
    parcels: np.ndarray  # (H, W) parcel index
    parcel_state: np.ndarray  # (n, 2) ground state per date
    parcel_tint: np.ndarray  # (n, 3) per-parcel colour factor
    rows: np.ndarray  # (H, W) crop-row pattern in [-1, 1]
    boundary: np.ndarray  # (H, W) bool, field edges
    relief: np.ndarray  # (H, W) low-frequency brightness variation, shared
    grain: np.ndarray  # (H, W) fine texture, shared
    roads: list[Road] = field(default_factory=list)
    road_rgb: np.ndarray = field(default_factory=lambda: np.zeros(3, np.float32))
    buildings: list[Building] = field(default_factory=list)
    trees: list[tuple[float, float, float]] = field(default_factory=list)  # x, y, radius


@dataclass
class DateLook:
    """Per-date appearance: season, sun and sensor."""

    vegetation_tint: np.ndarray  # (3,)
    tree_tint: np.ndarray  # (3,)
    sun_length: float  # shadow length factor
    gain: np.ndarray  # (3,)
    offset: np.ndarray  # (3,)
    gamma: float
    haze: float  # maximum haze opacity (0: none)
    blur: float  # Gaussian sigma in pixels
    noise: float  # sensor noise sigma in grey levels


def pair_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random generator of one pair, independent of every other pair's."""
    return np.random.default_rng([seed, SPLIT_CODES[split], index])


def smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """(size, size) float32 noise in [-1, 1]: a `cells`+1 square grid, smoothly interpolated."""
    grid = rng.uniform(-1.0, 1.0, (cells + 1, cells + 1)).astype(np.float32)
    x = np.linspace(0.0, cells, size, dtype=np.float32)
    i0 = np.minimum(x.astype(np.int64), cells - 1)
    f = x - i0
    f = f * f * (3 - 2 * f)  # smoothstep: no visible creases at the grid lines
    rows = grid[i0] * (1 - f)[:, None] + grid[i0 + 1] * f[:, None]
    noise: np.ndarray = rows[:, i0] * (1 - f)[None, :] + rows[:, i0 + 1] * f[None, :]
    return noise


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of an (H, W, C) float image, edges replicated."""
    radius = max(1, math.ceil(3 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps = (taps / taps.sum()).astype(np.float32)
    height, width = image.shape[:2]
    padded = np.pad(image, ((radius, radius), (0, 0), (0, 0)), mode="edge")
    image = sum(w * padded[i : i + height] for i, w in enumerate(taps))
    padded = np.pad(image, ((0, 0), (radius, radius), (0, 0)), mode="edge")
    blurred: np.ndarray = sum(w * padded[:, i : i + width] for i, w in enumerate(taps))
    return blurred


def _shift(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Move an (H, W, C) image by (dx, dy) pixels (|d| <= 3), bilinear, edges replicated."""
    pad = 4
    height, width = image.shape[:2]
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    nx, ny = math.floor(dx), math.floor(dy)
    fx, fy = dx - nx, dy - ny
    # out[y, x] = in[y - dy, x - dx]: a blend of in[y - ny] (1 - fy) and in[y - ny - 1] (fy).
    out = np.zeros_like(image)
    for wy, oy in ((1 - fy, pad - ny), (fy, pad - ny - 1)):
        for wx, ox in ((1 - fx, pad - nx), (fx, pad - nx - 1)):
            if wy * wx:
                out += wy * wx * padded[oy : oy + height, ox : ox + width]
    return out


def _rectangle(cx: float, cy: float, w: float, h: float, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    local = np.array([(-w, -h), (w, -h), (w, h), (-w, h)], dtype=np.float64) / 2
    corners: np.ndarray = local @ np.array([(c, s), (-s, c)]) + (cx, cy)
    return corners


def _draw_road(draw: ImageDraw.ImageDraw, road: Road, size: int) -> None:
    (px, py), (dx, dy) = road.point, road.direction
    ends = [(px - 2 * size * dx, py - 2 * size * dy), (px + 2 * size * dx, py + 2 * size * dy)]
    draw.line(ends, fill=255, width=round(road.width))


def _polygon(draw: ImageDraw.ImageDraw, corners: np.ndarray, fill: int) -> None:
    draw.polygon([(float(x), float(y)) for x, y in corners], fill=fill)


def _make_ground(rng: np.random.Generator, size: int, area: float) -> dict[str, Any]:
    n = max(3, int(rng.integers(6, 15) * area))
    seeds = rng.uniform(-0.1 * size, 1.1 * size, (n, 2)).astype(np.float32)
    coords = np.arange(size, dtype=np.float32)
    warp = 0.06 * size
    xs = coords[None, :] + warp * smooth_noise(rng, size, 3)
    ys = coords[:, None] + warp * smooth_noise(rng, size, 3)
    distance = (xs[None] - seeds[:, 0, None, None]) ** 2 + (ys[None] - seeds[:, 1, None, None]) ** 2
    parcels = np.argmin(distance, axis=0)
    boundary = np.zeros((size, size), dtype=bool)
    boundary[1:] |= parcels[1:] != parcels[:-1]
    boundary[:, 1:] |= parcels[:, 1:] != parcels[:, :-1]

    states = len(GROUND_RGB)
    state_a = rng.integers(0, states, n)
    season_change = rng.uniform(0.2, 0.6)  # fraction of fields whose state changes
    changes = rng.random(n) < season_change
    state_b = np.where(changes, (state_a + rng.integers(1, states, n)) % states, state_a)
    tint = rng.uniform(0.88, 1.12, (n, 1)) * rng.uniform(0.95, 1.05, (n, 3))
    # Crop rows: a sinusoid per field, of random orientation, period and phase.
    angle = rng.uniform(0, math.pi, n)
    frequency = 2 * math.pi / rng.uniform(3.0, 6.0, n)
    phase = rng.uniform(0, 2 * math.pi, n)
    kx = (frequency * np.cos(angle)).astype(np.float32)[parcels]
    ky = (frequency * np.sin(angle)).astype(np.float32)[parcels]
    rows = np.sin(coords[None, :] * kx + coords[:, None] * ky + phase.astype(np.float32)[parcels])
    relief = 0.6 * smooth_noise(rng, size, 4) + 0.4 * smooth_noise(rng, size, 12)
    grain = rng.standard_normal((size, size), dtype=np.float32)
    return {
        "parcels": parcels,
        "parcel_state": np.stack([state_a, state_b], 1),
        "parcel_tint": tint.astype(np.float32),
        "rows": rows,
        "boundary": boundary,
        "relief": relief,
        "grain": grain,
    }


def _clear(
    centre: tuple[float, float],
    radius: float,
    scene: Scene,
    occupied: list[tuple[float, float, float]],
) -> bool:
    """Whether a disc of `radius` at `centre` keeps clear of every road and placed object."""
    x, y = centre
    for road in scene.roads:
        (px, py), (dx, dy) = road.point, road.direction
        if abs((x - px) * dy - (y - py) * dx) < radius + road.width / 2 + 2:
            return False
    return all(math.hypot(x - ox, y - oy) >= radius + orad + 2 for ox, oy, orad in occupied)


def _place_buildings(
    rng: np.random.Generator,
    scene: Scene,
    occupied: list[tuple[float, float, float]],
    count: int,
    centre: tuple[float, float],
    spread: float,
    angle: float,
    in_a: bool,
    in_b: bool,
) -> None:
    size = scene.size
    attempts = 40
    for _ in range(count):
        # Candidates are drawn in one go (fast); the first that fits is kept.
        xs, ys = rng.normal(centre, spread, (attempts, 2)).T
        widths = rng.uniform(9, 32, attempts)
        heights = widths * rng.uniform(0.45, 1.0, attempts)
        turns = np.where(rng.random(attempts) < 0.3, math.pi / 2, 0.0)
        angles = angle + rng.normal(0, 0.05, attempts) + turns
        radii = 0.5 * np.hypot(widths, heights)
        inside = np.flatnonzero((xs >= 0) & (xs < size) & (ys >= 0) & (ys < size))
        fits = (k for k in inside if _clear((xs[k], ys[k]), radii[k], scene, occupied))
        chosen = next(fits, None)
        if chosen is None:
            continue
        cx, cy, w, h, theta = (float(v[chosen]) for v in (xs, ys, widths, heights, angles))
        radius = float(radii[chosen])
        occupied.append((cx, cy, radius))
        roof = ROOF_RGB[rng.integers(len(ROOF_RGB))] * rng.uniform(0.85, 1.15, 3)
        scene.buildings.append(
            Building(
                corners=_rectangle(cx, cy, w, h, theta),
                centre=(cx, cy),
                angle=theta,
                height=rng.uniform(3.0, 7.0),
                roof=roof.astype(np.float32),
                gable=bool(rng.random() < 0.55),
                in_a=in_a,
                in_b=in_b,
                rubble=bool(rng.random() < 0.5),
            )
        )


def make_scene(rng: np.random.Generator, size: int) -> Scene:
    """Draw the layout shared by both dates: ground, roads, buildings (with their dates), trees."""
    area = (size / 256) ** 2
    scene = Scene(size=size, **_make_ground(rng, size, area))
    angle = rng.uniform(0, math.pi / 2)  # the street grid's orientation

    def road(in_a: bool) -> Road:
        theta = angle + (math.pi / 2 if rng.random() < 0.5 else 0.0) + rng.normal(0, 0.03)
        point = tuple(rng.uniform(0.15 * size, 0.85 * size, 2))
        return Road(point, (math.cos(theta), math.sin(theta)), rng.uniform(5, 10), in_a)

    scene.roads = [road(True) for _ in range(int(rng.choice([0, 1, 1, 2, 2, 3])))]
    if rng.random() < 0.25:
        scene.roads.append(road(False))
    scene.road_rgb = (rng.uniform(88, 135) * rng.uniform(0.96, 1.04, 3)).astype(np.float32)

    occupied: list[tuple[float, float, float]] = []
    for _ in range(rng.integers(1, 4)):  # villages standing at both dates
        centre = tuple(rng.uniform(0, size, 2))
        count = rng.poisson(5 * area)
        _place_buildings(rng, scene, occupied, count, centre, 0.2 * size, angle, True, True)
    if rng.random() < 0.85:  # a new development
        centre = tuple(rng.uniform(0.1 * size, 0.9 * size, 2))
        count = rng.poisson(rng.uniform(10, 28) * area)
        _place_buildings(rng, scene, occupied, count, centre, 0.2 * size, angle, False, True)
    standing = [b for b in scene.buildings if b.in_a]
    for building in standing:  # demolitions
        if rng.random() < 0.2:
            building.in_b = False

    for _ in range(rng.poisson(2.5 * area)):  # groups of trees
        group = rng.uniform(0, size, 2)
        for _tree in range(rng.integers(3, 16)):
            x, y = rng.normal(group, 10)
            radius = rng.uniform(2.5, 6.0)
            if _clear((x, y), radius, scene, occupied):
                scene.trees.append((float(x), float(y), float(radius)))
    return scene


def make_look(rng: np.random.Generator) -> DateLook:
    """Draw one date's season, sun and sensor."""
    dryness = rng.uniform(0, 1)
    autumn = rng.uniform(0, 1)
    return DateLook(
        vegetation_tint=np.array(
            (1 + 0.45 * dryness, 1 + 0.1 * dryness, 1 + 0.25 * dryness), np.float32
        ),
        tree_tint=np.array((1 + 1.2 * autumn, 1 + 0.3 * autumn, 1 + 0.1 * autumn), np.float32),
        sun_length=rng.uniform(0.7, 1.4),
        gain=(rng.uniform(0.85, 1.15) * rng.uniform(0.94, 1.06, 3)).astype(np.float32),
        offset=rng.uniform(-10, 10, 3).astype(np.float32),
        gamma=rng.uniform(0.85, 1.15),
        haze=rng.uniform(0.15, 0.4) if rng.random() < 0.3 else 0.0,
        blur=rng.uniform(0.3, 1.0),
        noise=rng.uniform(1.5, 4.5),
    )


def _masks(scene: Scene, date: int, look: DateLook) -> dict[str, np.ndarray]:
    """Id maps (buildings, trees) and masks (roads, shadows) of one date."""
    size = scene.size
    roads = Image.new("L", (size, size))
    draw = ImageDraw.Draw(roads)
    for road in scene.roads:
        if road.in_a or date == 1:
            _draw_road(draw, road, size)

    buildings = Image.new("I", (size, size))  # 32-bit ids: no limit on the count
    draw = ImageDraw.Draw(buildings)
    for i, building in enumerate(scene.buildings, start=1):
        _polygon(draw, building.corners, i)

    shadows = Image.new("L", (size, size))
    shadow_draw = ImageDraw.Draw(shadows)
    sx, sy = SHADOW_DIRECTION
    for building in scene.buildings:
        if building.in_a if date == 0 else building.in_b:
            length = building.height * look.sun_length
            for step in np.linspace(0.0, 1.0, 6):
                _polygon(shadow_draw, building.corners + step * length * np.array((sx, sy)), 255)
    trees = Image.new("I", (size, size))
    tree_draw = ImageDraw.Draw(trees)
    for i, (x, y, r) in enumerate(scene.trees, start=1):
        length = 1.2 * r * look.sun_length
        shadow_draw.ellipse(
            (x - r + length * sx, y - r + length * sy, x + r + length * sx, y + r + length * sy),
            fill=255,
        )
        tree_draw.ellipse((x - r, y - r, x + r, y + r), fill=i)
    return {
        "roads": np.asarray(roads) > 0,
        "buildings": np.asarray(buildings),
        "shadows": np.asarray(shadows) > 0,
        "trees": np.asarray(trees),
    }


def render(scene: Scene, date: int, look: DateLook, rng: np.random.Generator) -> np.ndarray:
    """One date of `scene` as an (H, W, 3) float32 image, before sensor effects."""
    size = scene.size
    state = scene.parcel_state[:, date]
    colour = GROUND_RGB[state] * scene.parcel_tint * rng.uniform(0.96, 1.04, (len(state), 3))
    colour = np.where(GROUND_VEGETATED[state, None], colour * look.vegetation_tint, colour)
    image: np.ndarray = colour.astype(np.float32)[scene.parcels]

    modulation = (
        1
        + 0.09 * GROUND_ROWS[state][scene.parcels] * scene.rows
        + 0.10 * scene.relief
        + 0.04 * smooth_noise(rng, size, 6)
        + 0.05 * scene.grain
        - 0.12 * scene.boundary
    )
    image *= modulation[..., None]

    masks = _masks(scene, date, look)
    road_rgb = scene.road_rgb * rng.uniform(0.93, 1.07, 3).astype(np.float32)
    roads = masks["roads"]
    image[roads] = road_rgb * (1 + 0.05 * scene.grain[roads, None])

    ids = masks["buildings"]
    standing = np.zeros(len(scene.buildings) + 1, dtype=bool)
    rubble = np.zeros(len(scene.buildings) + 1, dtype=bool)
    for i, building in enumerate(scene.buildings, start=1):
        standing[i] = building.in_a if date == 0 else building.in_b
        rubble[i] = building.in_a and not building.in_b and date == 1 and building.rubble
    rubble_pixels = rubble[ids]
    image[rubble_pixels] = RUBBLE_RGB * (1 + 0.12 * scene.grain[rubble_pixels, None])

    shadow = masks["shadows"] & ~standing[ids]
    image[shadow] *= SHADOW_FACTOR

    tree_ids = masks["trees"]
    ys, xs = np.nonzero(tree_ids)
    if len(ys):
        x, y, radius = np.array([(0.0, 0.0, 1.0), *scene.trees], dtype=np.float32).T
        tree = tree_ids[ys, xs]
        light = (
            1 - 0.3 * ((xs - x[tree]) + (ys - y[tree])) / radius[tree] + 0.1 * scene.grain[ys, xs]
        )
        image[ys, xs] = TREE_RGB * look.tree_tint * light[:, None]  # lit from the top-left

    roof = np.zeros((len(scene.buildings) + 1, 3), dtype=np.float32)
    x, y, theta = np.zeros((3, len(roof)), dtype=np.float32)
    gable = np.zeros(len(roof), dtype=bool)
    for i, building in enumerate(scene.buildings, start=1):
        roof[i] = building.roof * rng.uniform(0.94, 1.06, 3)
        x[i], y[i] = building.centre
        theta[i] = building.angle
        gable[i] = building.gable
    roofs = standing[ids]
    flat = roofs & ~gable[ids]
    rim = flat & ~_erode(flat)
    ys, xs = np.nonzero(roofs)
    house = ids[ys, xs]
    # A gable roof's two halves face the sun differently; a flat roof has a darker rim.
    across = -(xs - x[house]) * np.sin(theta[house]) + (ys - y[house]) * np.cos(theta[house])
    shade = np.where(gable[house] & (across > 0), 0.78, 1.0)
    shade = np.where(rim[ys, xs], 0.85, shade) * (1 + 0.03 * scene.grain[ys, xs])
    image[ys, xs] = roof[house] * shade[:, None].astype(np.float32)
    return image


def _erode(mask: np.ndarray) -> np.ndarray:
    """4-neighbour binary erosion (pixels outside the image count as set)."""
    padded = np.pad(mask, 1, mode="edge")
    inner: np.ndarray = (
        mask & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    )
    return inner


def sense(image: np.ndarray, look: DateLook, rng: np.random.Generator) -> np.ndarray:
    """Apply one date's illumination, haze, blur and noise; return uint8 (H, W, 3)."""
    size = image.shape[0]
    image = image * look.gain + look.offset
    image = 255 * (np.clip(image, 0, 255) / 255) ** look.gamma
    if look.haze:
        opacity = look.haze * np.clip(smooth_noise(rng, size, 3) + 0.5, 0, 1)[..., None]
        image = image * (1 - opacity) + np.float32(205) * opacity
    image = _blur(image.astype(np.float32), look.blur)
    image = image + look.noise * rng.standard_normal(image.shape, dtype=np.float32)
    sensed: np.ndarray = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return sensed


def make_pair(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One pair: A and B as (size, size, 3) uint8, and the (size, size) bool change map."""
    scene = make_scene(rng, size)
    looks = (make_look(rng), make_look(rng))
    a = render(scene, 0, looks[0], rng)
    b = render(scene, 1, looks[1], rng)
    magnitude = rng.uniform(0.25, 2.0)
    direction = rng.uniform(0, 2 * math.pi)
    b = _shift(b, magnitude * math.cos(direction), magnitude * math.sin(direction))
    change = _change_map(scene)
    return sense(a, looks[0], rng), sense(b, looks[1], rng), change


def _change_map(scene: Scene) -> np.ndarray:
    """The (H, W) bool label: footprints of new and demolished buildings, new roads."""
    size = scene.size
    label = Image.new("L", (size, size))
    draw = ImageDraw.Draw(label)
    for road in scene.roads:
        if not road.in_a:
            _draw_road(draw, road, size)
    for building in scene.buildings:
        if building.in_a != building.in_b:
            _polygon(draw, building.corners, 255)
    return np.asarray(label) > 0


@dataclass(frozen=True)
class _Task:
    seed: int
    split: str
    index: int
    size: int
    split_dir: str
    histograms: bool


def _generate(task: _Task) -> SparseCounts | None:
    """Make and write one pair; for the baseline, return its sparse difference histograms
    (`benchmark.data.baseline.pair_counts`)."""
    a, b, change = make_pair(pair_rng(task.seed, task.split, task.index), task.size)
    write_pair(Path(task.split_dir), pair_name(task.split, task.index), a, b, change)
    if not task.histograms:
        return None
    return pair_counts(a, b, change)


def pair_name(split: str, index: int) -> str:
    return f"{split}_{index:04d}"


def generate_synthetic(
    out_dir: Path, config: SynthConfig, workers: int = WORKERS
) -> dict[str, Any]:
    """Generate the synthetic dataset into `out_dir` (replacing it) and return its manifest.

    `out_dir` is replaced as a whole, only once the new dataset is complete (`staging_dir`),
    and only if it is new, empty or a synthetic dataset already: anything else is refused
    before anything is written (`check_replaceable`, the rule of `cdbench prepare`).

    Args:
        out_dir: The dataset root, e.g. `data/prepared/synthetic`.
        config: Seed, image side and pairs per split.
        workers: Generator processes; the output does not depend on it.

    Returns:
        The manifest also written to `out_dir/manifest.json`: the generator's config and
        version, per split the pair count, changed-pixel fraction and file hashes, the number
        of pairs duplicated across splits, and the pixel-difference baseline on the test split.

    Raises:
        DataError: `out_dir` is a file, the current folder, or a folder holding anything but a
            synthetic dataset; it is left as it was.
    """
    out_dir = Path(out_dir)
    check_replaceable(out_dir, SYNTHETIC.name, "cdbench synth")
    with staging_dir(out_dir) as staging:
        tasks = [
            _Task(config.seed, split, i, config.size, str(staging / split), split == "test")
            for split in SPLITS
            for i in range(getattr(config, split))
        ]
        counts = DifferenceCounts()
        results = map_in_workers(
            _generate, tasks, workers, chunksize=8, context=get_context("fork")
        )
        for result in progress_bar(results, total=len(tasks), desc="synth", unit="pair"):
            if result is not None:
                counts.add(result)
        splits = {split: summarise_split(staging / split) for split in SPLITS}
        manifest = {
            "dataset": SYNTHETIC.name,
            "seed": config.seed,
            "generator": {**asdict(config), "version": GENERATOR_VERSION},
            "splits": splits,
            "duplicates_across_splits": count_cross_split_duplicates(splits),
            "pixel_difference_baseline": counts.record("test"),
        }
        manifest["caches"] = [str(p.relative_to(staging)) for p in write_caches(staging)]
        write_manifest(staging, manifest)
    return manifest


def preview(path: Path, seed: int = 0, size: int = 256, count: int = 4) -> None:
    """Write a PNG with `count` test pairs of a seed, one per row: A | B | label | |A - B|."""
    rows = []
    gap = np.full((size, 4, 3), 255, dtype=np.uint8)
    for index in range(count):
        a, b, change = make_pair(pair_rng(seed, "test", index), size)
        label = np.repeat(np.where(change, 255, 0).astype(np.uint8)[..., None], 3, axis=2)
        norm = np.sqrt(squared_differences(a, b)) * (255 / np.sqrt(MAX_SQUARED_DIFFERENCE))
        difference = np.repeat(np.clip(2 * norm, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
        rows.append(np.concatenate([a, gap, b, gap, label, gap, difference], axis=1))
        rows.append(np.full((4, rows[-1].shape[1], 3), 255, dtype=np.uint8))
    write_png(Path(path), np.concatenate(rows[:-1], axis=0))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Preview the synthetic dataset.")
    parser.add_argument("--preview", type=Path, required=True, help="PNG to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--count", type=int, default=4)
    args = parser.parse_args(argv)
    preview(args.preview, args.seed, args.size, args.count)


if __name__ == "__main__":
    main()
