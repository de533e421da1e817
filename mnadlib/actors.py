"""The actors of synthped: articulated pedestrians, runners, cyclists, skateboarders and carts.

Each actor is drawn with OpenCV (4 fractional bits of sub-pixel precision) into its own colour
layer and, with the same strokes, its own mask layer, so masks are exact. Every actor takes its
colours from one :func:`palette`, so anomalies differ from pedestrians only in motion and shape.
Used by the generator (:mod:`mnadlib.synth`) and by :mod:`mnadlib.inject`, which pastes these
actors into real footage.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import cv2
import numpy as np

Point = tuple[float, float]
_CYCLE = {"pedestrian": 0.9, "lawn_walker": 0.9, "runner": 1.6, "cyclist": 1.3}  # body heights per stride
_GAIT = {  # leg swing, knee bend, arm swing, elbow bend, forward lean (radians)
    "pedestrian": (0.42, 0.6, 0.40, 0.25, 0.04),
    "runner": (0.75, 1.3, 0.80, 1.40, 0.20),
}
_GAIT["lawn_walker"] = _GAIT["pedestrian"]  # same walk, only the path differs


class Pen:
    """Draws primitives into one actor's colour layer and, identically, its own mask layer."""

    def __init__(self, x0: int, y0: int, w: int, h: int) -> None:
        self.ox, self.oy = x0, y0
        self.img = np.zeros((h, w, 3), np.uint8)
        self.mask = np.zeros((h, w), np.uint8)

    def _pt(self, p: Point) -> tuple[int, int]:
        return int(round((p[0] - self.ox) * 16)), int(round((p[1] - self.oy) * 16))  # 4 fractional bits

    def _both(self, col: np.ndarray, draw: Callable[[np.ndarray, Any], Any]) -> None:
        draw(self.img, tuple(int(v) for v in col))
        draw(self.mask, 255)

    def polyline(self, pts: list[Point], col: np.ndarray, width: float) -> None:
        """Thick open polyline."""
        t = max(1, round(width))
        for a, b in zip(pts[:-1], pts[1:]):
            self._both(col, lambda im, c: cv2.line(im, self._pt(a), self._pt(b), c, t, cv2.LINE_8, 4))

    def disc(self, c: Point, r: float, col: np.ndarray, width: float = -1) -> None:
        """Filled disc, or a ring when width > 0."""
        t = -1 if width < 0 else max(1, round(width))
        self._both(col, lambda im, cc: cv2.circle(im, self._pt(c), max(16, round(r * 16)), cc, t, cv2.LINE_8, 4))

    def poly(self, pts: list[Point], col: np.ndarray) -> None:
        """Filled convex polygon."""
        arr = np.array([self._pt(p) for p in pts], np.int32)
        self._both(col, lambda im, c: cv2.fillConvexPoly(im, arr, c, cv2.LINE_8, 4))


def _chain(p: Point, angles: tuple[float, ...], length: float, d: float) -> list[Point]:
    """Joint positions of a limb; angles from the downward vertical, positive = forward."""
    pts = [p]
    for a in angles:
        pts.append((pts[-1][0] + d * length * math.sin(a), pts[-1][1] + length * math.cos(a)))
    return pts


def _knee(hip: Point, foot: Point, length: float, d: float) -> Point:
    """Middle joint of a limb of two equal segments, bent forward."""
    vx, vy = foot[0] - hip[0], foot[1] - hip[1]
    dist = max(math.hypot(vx, vy), 1e-6)
    off = math.sqrt(max(length**2 - (dist / 2) ** 2, 0.0))
    px, py = (-vy / dist, vx / dist) if -vy * d >= 0 else (vy / dist, -vx / dist)
    return hip[0] + vx / 2 + off * px, hip[1] + vy / 2 + off * py


def _person(pen: Pen, hip: Point, lean: float, h: float, d: float, legs: list[list[Point]],
            arms: list[tuple[float, float]] | None, cols: np.ndarray) -> Point:
    """Far leg and arm, torso, head, near leg and arm; arms are angle pairs or None; returns the shoulder."""
    ux, uy = d * math.sin(lean), -math.cos(lean)  # spine direction
    sh = (hip[0] + 0.3 * h * ux, hip[1] + 0.3 * h * uy)
    arm_pts = [_chain(sh, a, 0.17 * h, d) for a in arms] if arms else []
    for side in (0, 1):
        pen.polyline(legs[side], cols[2], 0.085 * h)
        if arm_pts:
            pen.polyline(arm_pts[side], cols[1], 0.06 * h)
        if side == 0:
            (hx, hy), (sx, sy), nx, ny = hip, sh, -uy * h, ux * h
            quad = [(hx - 0.07 * nx, hy - 0.07 * ny), (hx + 0.07 * nx, hy + 0.07 * ny),
                    (sx + 0.085 * nx, sy + 0.085 * ny), (sx - 0.085 * nx, sy - 0.085 * ny)]
            pen.poly(quad, cols[1])
            pen.disc((sx + 0.12 * h * ux, sy + 0.12 * h * uy), 0.08 * h, cols[0])
    return sh


def _walker(pen: Pen, x: float, y: float, h: float, d: float, phase: float, cols: np.ndarray, kind: str) -> None:
    """A walking or running person: swinging legs with knees, counter-swinging arms."""
    swing, knee, arm, elbow, lean = _GAIT[kind]
    legs, arms = [], []
    for off in (math.pi, 0.0):
        a, s = swing * math.sin(phase + off), -arm * math.sin(phase + off)
        legs.append((a, a - knee * max(0.0, math.cos(phase + off))))
        arms.append((s, s + elbow))
    hip = (x, y - max(0.25 * h * (math.cos(a) + math.cos(b)) for a, b in legs))  # the lower foot is on the ground
    _person(pen, hip, lean, h, d, [_chain(hip, ang, 0.25 * h, d) for ang in legs], arms, cols)


def _cyclist(pen: Pen, x: float, y: float, h: float, d: float, phase: float, cols: np.ndarray, kind: str) -> None:
    """A rider pedalling a bicycle: two wheels, a diamond frame, legs on rotating pedals."""
    def p(fx: float, fy: float) -> Point:
        return x + d * fx * h, y - fy * h
    rear, front, crank = p(-0.3, 0.17), p(0.3, 0.17), p(0, 0.17)
    seat, stem, bar = p(-0.1, 0.57), p(0.22, 0.52), p(0.25, 0.64)
    for c in (rear, front):
        pen.disc(c, 0.17 * h, cols[4], width=0.045 * h)
    for tube in ([rear, crank, seat, rear], [seat, stem, crank], [front, stem, bar]):
        pen.polyline(tube, cols[3], 0.035 * h)
    hip = (seat[0], seat[1] - 0.02 * h)
    pedals = [(crank[0] + d * 0.07 * h * math.cos(phase + o), crank[1] + 0.07 * h * math.sin(phase + o))
              for o in (math.pi, 0.0)]
    sh = _person(pen, hip, 0.55, h, d, [[hip, _knee(hip, f, 0.26 * h, d), f] for f in pedals], None, cols)
    pen.polyline([sh, ((sh[0] + bar[0]) / 2, (sh[1] + bar[1]) / 2 + 0.03 * h), bar], cols[1], 0.06 * h)


def _skater(pen: Pen, x: float, y: float, h: float, d: float, phase: float, cols: np.ndarray, kind: str) -> None:
    """A person standing rigid and sideways on a board with small wheels."""
    deck = y - 0.06 * h
    pen.polyline([(x - 0.27 * h, deck), (x + 0.27 * h, deck)], cols[3], 0.04 * h)
    for fx in (-0.17, 0.17):
        pen.disc((x + fx * h, y - 0.025 * h), 0.025 * h, cols[4])
    hip = (x, deck - 0.47 * h)
    feet = [(x - d * 0.12 * h, deck - 0.02 * h), (x + d * 0.12 * h, deck - 0.02 * h)]
    legs = [[hip, _knee(hip, f, 0.25 * h, d), f] for f in feet]
    _person(pen, hip, 0.08, h, d, legs, [(-0.5, -0.3), (0.5, 0.7)], cols)  # arms held out, still


def _cart(pen: Pen, x: float, y: float, h: float, d: float, phase: float, cols: np.ndarray, kind: str) -> None:
    """A small rigid vehicle: box body, cabin with window and driver, two wheels."""
    def p(fx: float, fy: float) -> Point:
        return x + d * fx * h, y - fy * h
    pen.poly([p(-0.7, 0.12), p(0.7, 0.12), p(0.7, 0.45), p(-0.7, 0.45)], cols[3])
    pen.poly([p(-0.55, 0.45), p(0.25, 0.45), p(0.12, 0.86), p(-0.5, 0.86)], cols[3])
    pen.poly([p(-0.4, 0.5), p(0.15, 0.5), p(0.06, 0.78), p(-0.37, 0.78)], cols[1])
    pen.disc(p(-0.15, 0.64), 0.075 * h, cols[0])
    for fx in (-0.45, 0.45):
        pen.disc(p(fx, 0.12), 0.12 * h, cols[4])
        pen.disc(p(fx, 0.12), 0.04 * h, cols[2])


_DRAW = {"pedestrian": _walker, "lawn_walker": _walker, "runner": _walker,
         "cyclist": _cyclist, "skateboarder": _skater, "cart": _cart}


def draw(kind: str, x: float, y: float, h: float, facing: float, phase: float, cols: np.ndarray) -> Pen:
    """Render a kind standing at ground point (x, y), h pixels tall, into its own colour and mask layers.

    ``facing`` is +1 (moving right) or -1; ``phase`` is the gait or pedal angle; ``cols`` a :func:`palette`.
    """
    if kind not in _DRAW:
        raise ValueError(f"unknown actor kind {kind!r}; choose from {', '.join(_DRAW)}")
    x0, y0 = math.floor(x - 0.8 * h) - 2, math.floor(y - 1.15 * h) - 2  # room for every kind's extent
    pen = Pen(x0, y0, math.ceil(1.6 * h) + 5, math.ceil(1.2 * h) + 5)
    _DRAW[kind](pen, x, y, h, facing, phase, cols, kind)
    return pen


def palette(rng: np.random.Generator, n: int = 5) -> np.ndarray:
    """n BGR colours, greyish with a mild tint: the one palette of pedestrians and anomalies alike."""
    return np.clip(rng.uniform(50, 200, (n, 1)) + rng.normal(0, 5, (n, 3)), 0, 255)


def render_actor(kind: str, height: float, rng: np.random.Generator | None = None, phase: float | None = None,
                 facing: float = 1.0, cols: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One actor of a kind and height on black: (BGR crop, bool mask).

    Colours (``cols``, see ``palette``) and gait or pedal ``phase`` are drawn from ``rng`` unless given;
    ``facing`` is +1 (moving right) or -1.
    """
    if cols is None or phase is None:
        if rng is None:
            raise ValueError("render_actor needs rng to draw the colours or phase it is not given")
        cols = palette(rng) if cols is None else cols
        phase = rng.uniform(0, 2 * math.pi) if phase is None else phase
    pen = draw(kind, 0.0, 0.0, height, 1.0 if facing >= 0 else -1.0, phase, cols)
    return pen.img, pen.mask > 0


def gait_step(kind: str, height: float, px: float, size: float = 1.0) -> float:
    """Phase advance of a kind's gait or pedalling over px pixels of travel at body height (0 for rolling kinds)."""
    return 2 * math.pi * px / (_CYCLE[kind] * height * size) if kind in _CYCLE else 0.0
