"""Procedurally generated, class-specific triangle meshes (cars and aircraft).

Every mesh is built in **ShapeNet's frame** — the frame of the release's CAD models (checked
on the release's car, :data:`fgpose.annotations.EXAMPLE_CAR_MODEL_ID`: length along X with the hood
at +X, roof at +Y, width along Z) — and then normalised like ShapeNetCore
(:func:`fgpose.mesh.normalize_mesh`: axis-aligned bounding box centred at the origin, unit
diagonal):

* ``+Y`` up; the lowest points are the wheel bottoms (cars) / the lowest of fuselage,
  nacelles or gear-less belly (aircraft);
* ``+X`` front: the car's hood, the aircraft's nose;
* ``Z`` across (car width, wing span); meshes are left/right symmetric in Z.

A mesh is a union of closed, consistently outward-oriented triangle surfaces (body, wheels,
wings, ...) that may interpenetrate ("watertight-ish"): fine for rasterization, silhouettes
and location fields. Faces are never degenerate. Sizes: about 1.5k-4k faces.

Classes: a class index picks a body *type* (``class_index % len(types)``) and the class's
own proportions are that type's nominal parameters jittered deterministically from
``(category, class_index, seed)``. So two classes of the same type differ a little (like two
sedans), classes of different types differ a lot (sedan vs SUV vs pickup, airliner vs
fighter). Car types: :data:`CAR_TYPES`; aircraft types: :data:`AIRPLANE_TYPES`.

Real meshes can join the pool (:func:`synthetic_classes` ``real_meshes``):
the release's ShapeNet car (already in this frame) and PyVista's ``airplane.ply`` (its own
axes: span along X, fuselage along Y with the nose at -Y, fin up along +Z), rotated by
:data:`AIRPLANE_PLY_ROTATION` into this frame after normalisation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
from typing import Sequence

import numpy as np
from scipy.interpolate import PchipInterpolator

from fgpose.annotations import EXAMPLE_CAR_MODEL_ID, cad_path
from fgpose.mesh import Mesh, load_mesh, normalize_mesh

__all__ = [
    "AIRPLANE_PLY_ROTATION",
    "AIRPLANE_TYPES",
    "CAR_PARTS",
    "CAR_TYPES",
    "CATEGORIES",
    "SyntheticClass",
    "class_mesh",
    "class_mesh_and_parts",
    "class_type",
    "model_id_for",
    "real_mesh_sources",
    "synthetic_classes",
]

CATEGORIES = ("car", "airplane")

CAR_TYPES = ("sedan", "suv", "hatchback", "pickup", "coupe", "van", "wagon", "sports")
"""Car body types; class ``i`` has type ``CAR_TYPES[i % 8]``."""

CAR_PARTS = ("body", "glass", "tyre", "rim", "head_lamp", "tail_lamp", "grille")
"""Appearance parts of procedural car faces (:attr:`SyntheticClass.parts` holds indices into
this tuple): the photo renderer paints ``body`` with the random paint and gives the others
fixed-looking materials (dark glass, black tyres, metal rims, light head lamps, red tail
lamps, a dark grille), so front and back look different as on real cars. The geometry (and
so every mask, box and location field) does not depend on the parts."""

AIRPLANE_TYPES = ("airliner", "widebody", "regional", "bizjet", "fighter", "light")
"""Aircraft types; class ``i`` has type ``AIRPLANE_TYPES[i % 6]``."""

AIRPLANE_PLY_ROTATION = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, 1.0], [-1.0, 0.0, 0.0]])
"""Rotation (``x_shapenet = R @ x_ply``) of ``meshes/airplane.ply`` into ShapeNet's frame.

The PLY has its span along X, fuselage along Y with the nose at -Y (the tail planes and
the fin are at +Y) and the fin pointing to +Z. So nose ``+X_new = -Y_ply``, up
``+Y_new = +Z_ply``, and ``Z_new = X_new x Y_new = -X_ply`` (a proper rotation, det +1).
"""

DEFAULT_REAL_MAX_FACES = 4000
"""Default face budget when loading real meshes (the ShapeNet car has 29k faces)."""


# ----------------------------------------------------------------------------- geometry


def _loft(sections: np.ndarray, cap_start: bool = True, cap_end: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Skins closed cross-section polygons into a closed surface.

    Args:
      sections: ``(S, K, 3)`` float64: ``S >= 2`` sections of ``K >= 3`` points each, all
        traversed in the same rotational sense.
      cap_start, cap_end: close the first/last section with a fan around its centroid.

    Returns:
      ``(vertices (N, 3) float64, faces (M, 3) int64)`` oriented outward (positive volume).
    """
    s, k, _ = sections.shape
    verts = [sections.reshape(-1, 3)]
    idx = np.arange(s * k).reshape(s, k)
    a = idx[:-1]
    b = np.roll(idx[:-1], -1, axis=1)
    c = np.roll(idx[1:], -1, axis=1)
    d = idx[1:]
    faces = [np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)]
    n = s * k
    ring = np.arange(k)
    if cap_start:
        verts.append(sections[0].mean(axis=0, keepdims=True))
        faces.append(np.stack([np.full(k, n), (ring + 1) % k, ring], -1))
        n += 1
    if cap_end:
        verts.append(sections[-1].mean(axis=0, keepdims=True))
        last = (s - 1) * k
        faces.append(np.stack([np.full(k, n), last + ring, last + (ring + 1) % k], -1))
        n += 1
    v = np.concatenate(verts)
    f = np.concatenate(faces).astype(np.int64)
    t = v[f]
    volume = np.einsum("ij,ij->i", t[:, 0], np.cross(t[:, 1], t[:, 2])).sum() / 6.0
    if volume < 0:
        f = f[:, ::-1].copy()
    return v, f


def _merge(parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> Mesh:
    """Concatenates ``(vertices, faces)`` parts into one normalised :class:`Mesh`."""
    verts, faces, offset = [], [], 0
    for v, f in parts:
        verts.append(v)
        faces.append(f + offset)
        offset += len(v)
    mesh = Mesh(vertices=np.concatenate(verts), faces=np.concatenate(faces))
    return normalize_mesh(mesh)


def _superellipse(k: int, power: float) -> tuple[np.ndarray, np.ndarray]:
    """``k`` points ``(s, t)`` of a superellipse ``|s|^p + |t|^p = 1`` (counter-clockwise)."""
    phi = 2 * np.pi * (np.arange(k) + 0.5) / k
    c, s = np.cos(phi), np.sin(phi)
    return np.sign(c) * np.abs(c) ** (2 / power), np.sign(s) * np.abs(s) ** (2 / power)


def _cylinder_z(center, radius: float, width: float, sections: int = 18) -> tuple[np.ndarray, np.ndarray]:
    """A closed cylinder (wheel) with its axis along Z."""
    phi = 2 * np.pi * np.arange(sections) / sections
    ring = np.stack([radius * np.cos(phi), radius * np.sin(phi), np.zeros(sections)], -1)
    secs = np.stack([ring + [0, 0, -width / 2], ring + [0, 0, width / 2]]) + np.asarray(center)
    return _loft(secs)


def _tube_x(xs, radii, centers_y, center_z: float = 0.0, k: int = 16, squash: float = 1.0):
    """A closed tube along X with circular sections (``radii`` per station, height * ``squash``)."""
    phi = 2 * np.pi * (np.arange(k) + 0.5) / k
    secs = np.stack(
        [
            np.stack(
                [np.full(k, x), yc + squash * r * np.sin(phi), center_z + r * np.cos(phi)], -1
            )
            for x, r, yc in zip(xs, radii, centers_y)
        ]
    )
    return _loft(secs)


def _airfoil(chord: float, thickness: float, n: int = 6) -> np.ndarray:
    """Closed symmetric NACA-00xx polygon ``(2n, 2)`` (chordwise x from LE=0 to TE=-chord).

    Returns points ``(x, t)`` going TE -> upper -> LE -> lower, ``x <= 0`` (the chord runs
    backwards, towards -X, from the leading edge).
    """
    xi = 0.5 * (1 - np.cos(np.linspace(0, np.pi, n + 1)))[1:-1]  # interior stations
    half = 5 * thickness * (0.2969 * np.sqrt(xi) - 0.126 * xi - 0.3516 * xi**2 + 0.2843 * xi**3 - 0.1036 * xi**4)
    upper = np.stack([-xi[::-1], half[::-1]], -1)  # from TE towards LE
    lower = np.stack([-xi, -half], -1)  # from LE towards TE
    pts = np.concatenate([[[-1.0, 0.0]], upper, [[0.0, 0.0]], lower])
    return pts * [chord, chord]


def _wing(
    root_le,
    semi_span: float,
    root_chord: float,
    taper: float,
    sweep_deg: float,
    dihedral_deg: float,
    thickness: float,
    side: float,
    vertical: bool = False,
    n: int = 6,
) -> tuple[np.ndarray, np.ndarray]:
    """A straight-tapered, swept lifting surface lofted from root to tip.

    Args:
      root_le: ``(3,)`` leading-edge point of the root section.
      semi_span: span from root to tip (model units).
      root_chord, taper: root chord, tip chord = ``taper * root_chord``.
      sweep_deg: leading-edge sweep (tip LE lies ``semi_span * tan(sweep)`` behind, -X).
      dihedral_deg: upward angle of the span direction (ignored for ``vertical``).
      thickness: thickness/chord ratio.
      side: +1 (span towards +Z) or -1 (towards -Z); for ``vertical`` surfaces the span goes
        to +Y and ``side`` is ignored.
    """
    foil = _airfoil(1.0, thickness, n)
    root_le = np.asarray(root_le, np.float64)
    sweep = np.tan(np.radians(sweep_deg))
    secs = []
    for frac in (0.0, 0.5, 1.0):
        chord = root_chord * (1 + (taper - 1) * frac)
        le = root_le.copy()
        le[0] -= frac * semi_span * sweep
        if vertical:
            le[1] += frac * semi_span
            pts = np.stack([le[0] + chord * foil[:, 0], np.full(len(foil), le[1]), le[2] + chord * foil[:, 1]], -1)
        else:
            le[2] += side * frac * semi_span
            le[1] += frac * semi_span * np.tan(np.radians(dihedral_deg))
            pts = np.stack([le[0] + chord * foil[:, 0], le[1] + chord * foil[:, 1], np.full(len(foil), le[2])], -1)
        secs.append(pts)
    return _loft(np.stack(secs))


# ----------------------------------------------------------------------------- classes


def _class_rng(category: str, class_index: int, seed: int) -> np.random.Generator:
    tag = int.from_bytes(hashlib.sha256(category.encode()).digest()[:4], "little")
    return np.random.default_rng([tag, int(class_index), int(seed)])


def class_type(category: str, class_index: int) -> str:
    """Body type of a class: ``CAR_TYPES[i % 8]`` or ``AIRPLANE_TYPES[i % 6]``."""
    types = _types(category)
    if class_index < 0:
        raise ValueError(f"class_index must be >= 0, got {class_index}")
    return types[class_index % len(types)]


def _types(category: str) -> tuple[str, ...]:
    if category == "car":
        return CAR_TYPES
    if category == "airplane":
        return AIRPLANE_TYPES
    raise ValueError(f"unknown category {category!r}; expected one of {CATEGORIES}")


# Nominal car parameters (length = 1). width, height (roof above ground), ground clearance,
# wheel radius, belt (hood/deck height as a fraction of the roof height), and the top
# profile's x stations: cabin rear base, roof rear, roof front, windscreen base;
# wheelbase (fraction of length), tumblehome (greenhouse narrowing), boxiness (power).
_CAR = {
    #            W     H     gc     r      belt  x_cr   x_rr   x_rf  x_wf  wb    tum   pow
    "sedan":    (0.40, 0.29, 0.035, 0.068, 0.62, -0.34, -0.17, 0.07, 0.22, 0.58, 0.25, 3.0),
    "suv":      (0.42, 0.38, 0.060, 0.085, 0.60, -0.49, -0.44, 0.12, 0.27, 0.57, 0.15, 3.6),
    "hatchback": (0.43, 0.34, 0.038, 0.070, 0.58, -0.49, -0.36, 0.08, 0.24, 0.62, 0.22, 3.2),
    "pickup":   (0.37, 0.35, 0.065, 0.080, 0.60, -0.12, -0.08, 0.12, 0.23, 0.60, 0.12, 4.0),
    "coupe":    (0.43, 0.27, 0.030, 0.068, 0.62, -0.30, -0.10, 0.05, 0.18, 0.56, 0.30, 3.0),
    "van":      (0.40, 0.45, 0.040, 0.065, 0.50, -0.495, -0.47, 0.22, 0.38, 0.62, 0.10, 4.5),
    "wagon":    (0.40, 0.31, 0.035, 0.068, 0.60, -0.49, -0.43, 0.07, 0.22, 0.60, 0.20, 3.3),
    "sports":   (0.46, 0.24, 0.022, 0.070, 0.58, -0.26, -0.13, 0.02, 0.14, 0.58, 0.32, 2.8),
}


def _car_mesh(kind: str, rng: np.random.Generator) -> tuple[Mesh, np.ndarray]:
    nominal = np.array(_CAR[kind], np.float64)
    jitter = np.ones_like(nominal)
    jitter[[0, 1, 2, 3, 4, 9]] = np.exp(rng.normal(0.0, 0.05, 6))  # sizes: +-5 %
    W, H, gc, r, belt, x_cr, x_rr, x_rf, x_wf, wb, tum, power = nominal * jitter
    shift = rng.normal(0.0, 0.02, 4)  # move the cabin stations a little
    x_cr, x_rr, x_rf, x_wf = np.sort(np.clip(np.array([x_cr, x_rr, x_rf, x_wf]) + shift, -0.495, 0.45))
    x_rr, x_rf, x_wf = max(x_rr, x_cr + 0.005), max(x_rf, x_rr + 0.02), max(x_wf, x_rf + 0.02)
    x_cr = min(x_cr, x_rr - 0.005)
    belt_y = belt * H
    nose = rng.uniform(0.75, 0.9)
    # Top profile (x -> y), rear (-0.5) to front (+0.5).
    kx = [-0.5, -0.47, x_cr, x_rr, x_rf, x_wf, 0.44, 0.5]
    ky = [0.8 * belt_y, belt_y, belt_y * 1.02, H, H, belt_y * 1.03, 0.95 * belt_y, nose * belt_y]
    keep = [0]
    for i in range(1, len(kx) - 1):  # strictly increasing knots (drop crowded / crossed ones)
        if kx[i] > kx[keep[-1]] + 1e-3 and kx[i] < 0.5 - 1e-3:
            keep.append(i)
    keep.append(len(kx) - 1)
    kx, ky = np.array(kx)[keep], np.array(ky)[keep]
    top = PchipInterpolator(kx, ky)
    # Stations: denser at the ends and at the cabin's corners.
    xs = np.unique(np.concatenate([np.linspace(-0.5, 0.5, 30), 0.5 * np.cos(np.linspace(np.pi, 0, 9)), kx]))
    xs = xs[np.concatenate([[True], np.diff(xs) > 4e-3])]
    xs[0], xs[-1] = -0.5, 0.5
    yt = top(xs)
    end = np.clip((np.abs(xs) - 0.38) / 0.12, 0, 1)
    yb = gc + 0.45 * (belt_y - gc) * end**2  # bumpers: the bottom rises at both ends
    half_w = W / 2 * (1 - 0.22 * end**2.5)  # rounded plan view
    # End sections would otherwise be full-size flat caps: shrink the very ends a little.
    tip = (np.abs(xs) > 0.499).astype(float)
    yb = yb + 0.25 * tip * (yt - yb)
    half_w = half_w * (1 - 0.15 * tip)
    s, t = _superellipse(32, power)
    t = (t + 1) / 2
    secs = []
    for x, top_y, bottom_y, w in zip(xs, yt, yb, half_w):
        y = bottom_y + t * (top_y - bottom_y)
        b = min(belt_y, top_y - 1e-3)
        narrowing = tum * np.clip((y - b) / max(top_y - b, 1e-3), 0, 1)
        z = s * w * (1 - narrowing)
        secs.append(np.stack([np.full_like(y, x), y, z], -1))
    body = _loft(np.stack(secs))
    parts = [body]
    labels = [_car_body_parts(*body, num_quads=(len(secs) - 1) * len(s), H=H, belt_y=belt_y, W=W)]
    # Wheels: bottoms on the ground (y = 0), slightly proud of the body sides.
    ww = 0.075 * rng.uniform(0.9, 1.1)
    front_axle = 0.5 - (1 - wb) / 2 + rng.normal(0, 0.01)
    axles = (front_axle, front_axle - wb)
    sections = 18
    for xa in axles:
        for side in (-1.0, 1.0):
            wheel = _cylinder_z((xa, r, side * (W / 2 - ww / 2 + 0.006)), r, ww, sections)
            parts.append(wheel)
            wheel_labels = np.full(len(wheel[1]), CAR_PARTS.index("tyre"), np.int8)
            wheel_labels[-2 * sections :] = CAR_PARTS.index("rim")  # the two caps (see _loft)
            labels.append(wheel_labels)
    return _merge(parts), np.concatenate(labels)


def _car_body_parts(
    vertices: np.ndarray, faces: np.ndarray, *, num_quads: int, H: float, belt_y: float, W: float
) -> np.ndarray:
    """Part index (:data:`CAR_PARTS`) of each face of the lofted body (length-1 frame).

    A face is classified by the centroid of its quad (:func:`_loft` lists the ``num_quads``
    first triangles of the quads, then their second triangles, then the caps), so both
    triangles of a quad get the same part and part borders follow the quad grid.
    Glass: the greenhouse band between just above the belt line and just below the roof.
    Lamps and grille: the front (x > 0.45) / rear (x < -0.45) faces in the band 55-97 % of
    the belt height; lamps towards the sides (|z| > 0.2 W), the grille between them.
    """
    c = vertices[faces].mean(axis=1)
    quad = 0.5 * (c[:num_quads] + c[num_quads : 2 * num_quads])
    c[:num_quads] = c[num_quads : 2 * num_quads] = quad
    x, y, z = c[:, 0], c[:, 1], np.abs(c[:, 2])
    out = np.full(len(faces), CAR_PARTS.index("body"), np.int8)
    cabin = H - belt_y
    out[(y > belt_y + 0.12 * cabin) & (y < H - 0.1 * cabin)] = CAR_PARTS.index("glass")
    band = (y > 0.55 * belt_y) & (y < 0.97 * belt_y)
    side = z > 0.2 * W
    out[band & (x > 0.45) & side] = CAR_PARTS.index("head_lamp")
    out[band & (x > 0.45) & ~side] = CAR_PARTS.index("grille")
    out[band & (x < -0.45) & side] = CAR_PARTS.index("tail_lamp")
    return out


# Nominal aircraft parameters (fuselage length = 1): fuselage radius, nose length, tail
# length, wing semi-span, root chord, taper, LE sweep (deg), dihedral (deg), wing x (root
# LE), wing height (-1 low .. +1 high), engines (0, 2, 4, or -2 for rear-mounted), T-tail.
_AIR = {
    #             R      nose  tail  semi  c_r   tap   sweep dih  x_w    h_w  eng  ttail
    "airliner": (0.050, 0.10, 0.28, 0.50, 0.20, 0.28, 28.0, 5.0, 0.12, -0.7, 2, 0),
    "widebody": (0.058, 0.09, 0.27, 0.52, 0.22, 0.25, 33.0, 4.0, 0.12, -0.7, 4, 0),
    "regional": (0.050, 0.08, 0.28, 0.55, 0.12, 0.55, 3.0, 1.5, 0.13, 0.9, 2, 1),
    "bizjet":   (0.045, 0.14, 0.30, 0.42, 0.16, 0.35, 25.0, 3.0, 0.02, -0.7, -2, 1),
    "fighter":  (0.050, 0.22, 0.20, 0.30, 0.48, 0.12, 45.0, -2.0, 0.10, 0.0, 0, 0),
    "light":    (0.060, 0.12, 0.40, 0.65, 0.17, 0.75, 2.0, 2.0, 0.20, 0.9, 0, 0),
}


def _airplane_mesh(kind: str, rng: np.random.Generator) -> Mesh:
    p = np.array(_AIR[kind], np.float64)
    j = np.exp(rng.normal(0.0, 0.06, 6))
    R, nose, tail, semi, c_r, taper = p[:6] * j
    sweep = p[6] + rng.normal(0.0, 2.5)
    dihedral, x_w, h_w = p[7] + rng.normal(0.0, 1.0), p[8] + rng.normal(0.0, 0.02), p[9]
    engines, t_tail = int(p[10]), bool(p[11])
    parts = []
    # Fuselage: ellipsoidal nose, cylinder, upswept tapering tail cone.
    xs = np.concatenate([
        0.5 - nose * (1 - np.sin(np.linspace(0.08, np.pi / 2, 10))),
        np.linspace(0.5 - nose - 0.02, -0.5 + tail + 0.02, 8),
        np.linspace(-0.5 + tail, -0.5, 10),
    ])
    xs = np.sort(np.unique(np.round(xs, 6)))[::-1]
    rad = np.full_like(xs, R)
    yc = np.zeros_like(xs)
    in_nose = xs > 0.5 - nose
    u = (xs[in_nose] - (0.5 - nose)) / nose
    rad[in_nose] = R * np.sqrt(np.clip(1 - u**2, 0.0064, 1))
    yc[in_nose] = -0.25 * R * u**2  # drooping nose
    in_tail = xs < -0.5 + tail
    w = ((-0.5 + tail) - xs[in_tail]) / tail
    rad[in_tail] = R * (1 - 0.8 * w**1.3)
    yc[in_tail] = 0.7 * R * w**1.5  # upswept tail
    if kind == "fighter":  # flatter, wider fuselage
        rad = rad * 1.0
    parts.append(_tube_x(xs, rad, yc, k=16, squash=1.0 if kind != "fighter" else 0.8))
    # Main wings.
    wing_y = h_w * R * 0.85
    for side in (-1.0, 1.0):
        parts.append(_wing((x_w, wing_y, side * 0.5 * R), semi, c_r, taper, sweep, dihedral, 0.12, side))
    # Horizontal tail and fin.
    fin_h = (2.6 if kind != "fighter" else 2.2) * R * 1.6 * rng.uniform(0.9, 1.1)
    fin_c = 0.16 * rng.uniform(0.9, 1.1) if kind != "fighter" else 0.18
    fin_x = -0.5 + fin_c + 0.02
    fin_y0 = 0.7 * R * 0.8 + 0.3 * R
    parts.append(_wing((fin_x, fin_y0, 0.0), fin_h, fin_c, 0.55, 35.0 if kind != "light" else 20.0, 0, 0.10, 1.0, vertical=True))
    stab_span = 0.38 * semi * rng.uniform(0.9, 1.1) if kind != "fighter" else 0.45 * semi
    stab_c = 0.1 * rng.uniform(0.9, 1.1)
    if t_tail:
        stab_le = (fin_x - fin_h * np.tan(np.radians(35.0)), fin_y0 + fin_h, 0.0)
    else:
        stab_le = (-0.5 + stab_c + 0.04, 0.5 * R, 0.0)
    for side in (-1.0, 1.0):
        le = np.array(stab_le) + [0, 0, side * (0.02 if t_tail else 0.3 * R)]
        parts.append(_wing(le, stab_span, stab_c, 0.5, 30.0 if kind != "light" else 5.0, 4.0 if not t_tail else 0.0, 0.10, side))
    # Engines.
    tan_sweep = np.tan(np.radians(sweep))
    tan_dih = np.tan(np.radians(dihedral))
    if engines > 0:
        fracs = (0.35,) if engines == 2 else (0.3, 0.6)
        for frac in fracs:
            zs = frac * semi
            le_x = x_w - zs * tan_sweep
            eng_r = (0.032 if kind != "regional" else 0.026) * rng.uniform(0.9, 1.1)
            eng_l = 0.14 if kind != "regional" else 0.16
            y = wing_y + zs * tan_dih + (-eng_r * 1.3 if kind != "regional" else 0.0)
            x0 = le_x + (0.07 if kind != "regional" else 0.09)
            ex = np.linspace(x0, x0 - eng_l, 6)
            er = eng_r * np.array([0.85, 1.0, 1.0, 0.95, 0.8, 0.55])
            for side in (-1.0, 1.0):
                parts.append(_tube_x(ex, er, np.full(6, y), center_z=side * (zs + 0.5 * R), k=12))
    elif engines < 0:  # rear-mounted pods on the fuselage
        eng_r = 0.03 * rng.uniform(0.9, 1.1)
        x0 = -0.5 + tail + 0.02
        ex = np.linspace(x0, x0 - 0.15, 6)
        er = eng_r * np.array([0.85, 1.0, 1.0, 0.95, 0.8, 0.55])
        for side in (-1.0, 1.0):
            parts.append(_tube_x(ex, er, np.full(6, 0.5 * R), center_z=side * (R + eng_r * 1.2), k=12))
    return _merge(parts)


def class_mesh(category: str, class_index: int, seed: int = 0) -> Mesh:
    """The procedural mesh of one synthetic class (deterministic).

    Args:
      category: ``'car'`` or ``'airplane'``.
      class_index: ``>= 0``; the body type is :func:`class_type` ``(category, class_index)``,
        the proportions are jittered from ``(category, class_index, seed)``.
      seed: changes every class's proportions (another "catalogue" of models).

    Returns:
      A :class:`fgpose.mesh.Mesh` in ShapeNet's frame (+Y up, +X front/nose, Z across;
      bounding box centred at the origin with unit diagonal), float32 vertices, a few
      thousand outward-oriented, non-degenerate triangles.
    """
    return class_mesh_and_parts(category, class_index, seed)[0]


def class_mesh_and_parts(category: str, class_index: int, seed: int = 0) -> tuple[Mesh, np.ndarray | None]:
    """:func:`class_mesh` and its faces' appearance parts.

    Returns:
      ``(mesh, parts)``: ``parts`` is ``(F,) int8`` indices into :data:`CAR_PARTS` for cars
      and ``None`` for aircraft (painted all over).
    """
    kind = class_type(category, class_index)
    rng = _class_rng(category, class_index, seed)
    if category == "car":
        return _car_mesh(kind, rng)
    return _airplane_mesh(kind, rng), None


def model_id_for(category: str, class_index: int, seed: int = 0) -> str:
    """Stable, ShapeNet-like model id (32 hex digits) of a procedural class."""
    return hashlib.sha1(f"fgpose-synthetic/{category}/{int(class_index)}/{int(seed)}".encode()).hexdigest()[:32]


@dataclasses.dataclass
class SyntheticClass:
    """One fine-grained class of the synthetic dataset.

    Attributes:
      name: class name, e.g. ``'car_sedan_03'`` (procedural: ``<category>_<type>_<index>``)
        or the name given for a real mesh.
      category: ``'car'`` or ``'airplane'``.
      mesh: the class's :class:`fgpose.mesh.Mesh` (ShapeNet frame, unit bbox diagonal).
      model_id: stable id (32 hex digits for procedural classes; the mesh file's directory
        name for ShapeNet models, e.g. :data:`fgpose.annotations.EXAMPLE_CAR_MODEL_ID`, otherwise a hash
        of the name and file name).
      parts: ``(F,) int8`` appearance part of each face (indices into :data:`CAR_PARTS`), or
        ``None`` to paint the whole mesh (aircraft, real meshes).
    """

    name: str
    category: str
    mesh: Mesh
    model_id: str
    parts: np.ndarray | None = None


def _load_real(name: str, category: str, path, rotation=None, max_faces: int = DEFAULT_REAL_MAX_FACES) -> SyntheticClass:
    path = pathlib.Path(path)
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r} for real mesh {name!r}")
    mesh = load_mesh(path, normalize=True, max_faces=max_faces, drop_degenerate=True)
    if rotation is None and path.name == "airplane.ply":
        rotation = AIRPLANE_PLY_ROTATION
    if rotation is not None:
        rot = np.asarray(rotation, np.float64)
        mesh = normalize_mesh(Mesh(vertices=mesh.vertices.astype(np.float64) @ rot.T, faces=mesh.faces))
    if path.name == "model.obj" and path.parent.name:
        model_id = path.parent.name
    else:
        model_id = hashlib.sha1(f"{name}/{path.name}".encode()).hexdigest()[:32]
    return SyntheticClass(name=name, category=category, mesh=mesh, model_id=model_id)


def synthetic_classes(
    num_car_classes: int,
    num_airplane_classes: int,
    seed: int = 0,
    real_meshes: Sequence[tuple] = (),
    *,
    max_faces: int = DEFAULT_REAL_MAX_FACES,
) -> list[SyntheticClass]:
    """The class list of a synthetic dataset: procedural cars, procedural aircraft, real meshes.

    Args:
      num_car_classes, num_airplane_classes: number of procedural classes per category
        (class ``i`` of a category is :func:`class_mesh` ``(category, i, seed)``).
      seed: catalogue seed (see :func:`class_mesh`).
      real_meshes: ``(name, category, path)`` or ``(name, category, path, rotation (3, 3))``
        tuples, e.g. from :func:`real_mesh_sources`. Each is loaded with
        ``load_mesh(path, normalize=True, max_faces=max_faces, drop_degenerate=True)``
        and rotated by ``rotation`` into ShapeNet's frame (default: identity, or
        :data:`AIRPLANE_PLY_ROTATION` for a file named ``airplane.ply``), then
        re-normalised.
      max_faces: face budget of the real meshes.

    Returns:
      ``num_car_classes + num_airplane_classes + len(real_meshes)`` classes in that order
      (the label of a class is its index in this list). Names: ``car_<type>_<ii>`` and
      ``airplane_<type>_<ii>`` (``ii`` = class index within the category, 2+ digits).
    """
    out = []
    for category, count in (("car", num_car_classes), ("airplane", num_airplane_classes)):
        if count < 0:
            raise ValueError(f"class counts must be >= 0, got {count} for {category}")
        for i in range(count):
            mesh, parts = class_mesh_and_parts(category, i, seed)
            out.append(
                SyntheticClass(
                    name=f"{category}_{class_type(category, i)}_{i:02d}",
                    category=category,
                    mesh=mesh,
                    model_id=model_id_for(category, i, seed),
                    parts=parts,
                )
            )
    for entry in real_meshes:
        entry = tuple(entry)
        if len(entry) not in (3, 4):
            raise ValueError(f"real mesh entries are (name, category, path[, rotation]), got {entry!r}")
        out.append(_load_real(*entry, max_faces=max_faces))
    names = [c.name for c in out]
    if len(set(names)) != len(names):
        raise ValueError(f"class names must be unique, got {names}")
    return out


REAL_CAR_MODEL_ID = EXAMPLE_CAR_MODEL_ID
"""Alias of :data:`fgpose.annotations.EXAMPLE_CAR_MODEL_ID` (kept for existing imports)."""


def real_mesh_sources(release_dir: str | os.PathLike | None) -> list[tuple[str, str, pathlib.Path, np.ndarray]]:
    """The real meshes available next to a release directory, for ``synthetic_classes``.

    Looks for the release's car, ``cad_path(release_dir, "StanfordCars", EXAMPLE_CAR_MODEL_ID)``
    (name ``'car_shapenet_<first 8 digits of the id>'``, i.e. ``'car_shapenet_189c2b53'``,
    identity rotation) and
    ``<release_dir>/../meshes/airplane.ply`` (name ``'airplane_pyvista'``, rotated by
    :data:`AIRPLANE_PLY_ROTATION`).

    Returns:
      ``[(name, category, path, rotation (3, 3)), ...]`` for the files that exist; ``[]``
      when ``release_dir`` is ``None`` or nothing is there.
    """
    if release_dir is None:
        return []
    root = pathlib.Path(release_dir).expanduser()
    out = []
    car = cad_path(root, "StanfordCars", EXAMPLE_CAR_MODEL_ID)
    if car.is_file():
        out.append((f"car_shapenet_{EXAMPLE_CAR_MODEL_ID[:8]}", "car", car, np.eye(3)))
    plane = root.parent / "meshes" / "airplane.ply"
    if plane.is_file():
        out.append(("airplane_pyvista", "airplane", plane, AIRPLANE_PLY_ROTATION.copy()))
    return out
