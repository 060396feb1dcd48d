"""The embedded default evaluation set: a small DAVIS-layout dataset whose masks are exact by construction.

Each sequence plays consecutive frames of one real sample clip as the background; 2-3 objects, textured with
patches cut from a different real clip and shaped as ellipses, move over it on straight paths that bounce
off the borders, in a fixed depth order (later objects occlude earlier ones). Annotations are the object ids
of the pixels each object covers after occlusion: palette PNGs, several objects per sequence.
"""
from __future__ import annotations

import os

import cv2
import numpy as np

from vidssl.io import VideoReader, write_davis_mask


def _render_sequence(background: np.ndarray, textures: list[np.ndarray], rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray]:
    T, H, W = background.shape[:3]
    frames, masks = background.copy(), np.zeros((T, H, W), np.uint8)
    for k, tex in enumerate(textures, start=1):
        th, tw = tex.shape[:2]
        v, u = np.mgrid[0:th, 0:tw] + 0.5
        ys, xs = np.nonzero(((u - tw / 2) / (tw / 2)) ** 2 + ((v - th / 2) / (th / 2)) ** 2 <= 1)  # ellipse
        pos = np.array([rng.uniform(0, W - tw), rng.uniform(0, H - th)])
        vel = rng.uniform(1.5, 4.0, size=2) * rng.choice([-1, 1], size=2)
        for t in range(T):
            x0, y0 = int(round(pos[0])), int(round(pos[1]))
            frames[t, ys + y0, xs + x0] = tex[ys, xs]  # the path stays inside the frame
            masks[t, ys + y0, xs + x0] = k
            pos += vel
            for d, limit in ((0, W - tw), (1, H - th)):
                if not 0 <= pos[d] <= limit:
                    vel[d] = -vel[d]
                    pos[d] = min(max(pos[d], 0), limit)
    return frames, masks


def make_synthetic_davis(root: str, videos: list[str] | None = None, n_frames: int = 30,
                         size: tuple[int, int] = (240, 320), seed: int = 0) -> list[str]:
    """Write the set under `root` (JPEGImages/480p/<seq>/, Annotations/480p/<seq>/); returns the sequence
    names. Deterministic for a given seed; rewritten on every call."""
    if videos is None:
        from vidssl.data.sample_videos import sample_videos
        videos = sample_videos()
    rng = np.random.default_rng(seed)
    H, W = size
    clips = []
    for path in videos:
        with VideoReader(path) as v:
            n = min(n_frames, v.num_frames)
            frames = v.get_frames(list(range(n))).numpy()
        clips.append(np.stack([cv2.resize(f, (W, H), interpolation=cv2.INTER_AREA) for f in frames]))
    names = []
    for i, background in enumerate(clips):
        source = clips[(i + 1) % len(clips)]
        textures = []
        for k in range(2 + i % 2):
            th, tw = int(rng.integers(H // 5, H // 3)), int(rng.integers(W // 6, W // 3))
            f = source[int(rng.integers(len(source)))]
            y, x = int(rng.integers(0, H - th)), int(rng.integers(0, W - tw))
            textures.append(f[y:y + th, x:x + tw])
        frames, masks = _render_sequence(background, textures, rng)
        name = f"synthetic-{os.path.splitext(os.path.basename(videos[i]))[0]}"
        img_dir = os.path.join(root, "JPEGImages", "480p", name)
        ann_dir = os.path.join(root, "Annotations", "480p", name)
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
        for t in range(len(frames)):
            cv2.imwrite(os.path.join(img_dir, f"{t:05d}.jpg"), cv2.cvtColor(frames[t], cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            write_davis_mask(os.path.join(ann_dir, f"{t:05d}.png"), masks[t])
        names.append(name)
    return names
