"""Pictures people can look at: masks blended over frames, a video per sequence, one summary image."""
from __future__ import annotations

import os

import cv2
import numpy as np
from PIL import Image

from vidssl.io.frames import davis_palette


def blend(frame: np.ndarray, ids: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Objects (ids > 0) tinted with their DAVIS colour and outlined; background untouched."""
    pal = davis_palette()
    out = frame.astype(np.float32).copy()
    fg = ids > 0
    out[fg] = (1 - alpha) * out[fg] + alpha * pal[ids[fg]]
    out = out.astype(np.uint8)
    for k in np.unique(ids[fg]):
        contours, _ = cv2.findContours((ids == k).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, pal[k].tolist(), 2)
    return out


def save_video(frames: list[np.ndarray], path: str, fps: float = 12.0) -> str:
    """H.264 MP4 through PyAV (plays in browsers; ~10 ms a 480p frame); a GIF next to it if this PyAV build
    has no libx264. Returns the path written."""
    try:
        import av

        h, w = (d - d % 2 for d in frames[0].shape[:2])  # yuv420p wants even sizes
        tmp = path + ".tmp.mp4"
        with av.open(tmp, "w") as container:
            stream = container.add_stream("libx264", rate=int(round(fps)))
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.options = {"crf": "23", "preset": "veryfast"}
            for f in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f[:h, :w]), format="rgb24")))
            container.mux(stream.encode())
        os.replace(tmp, path)
        return path
    except Exception:  # no encoder in this build: fall back to a GIF
        if os.path.exists(path + ".tmp.mp4"):
            os.remove(path + ".tmp.mp4")
        gif = os.path.splitext(path)[0] + ".gif"
        save_gif(frames, gif, fps)
        return gif


def save_gif(frames: list[np.ndarray], path: str, fps: float = 8.0, max_width: int = 480) -> None:
    h, w = frames[0].shape[:2]
    scale = min(1.0, max_width / w)
    size = (int(w * scale), int(h * scale))
    imgs = [Image.fromarray(cv2.resize(f, size, interpolation=cv2.INTER_AREA)) for f in frames]
    imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=int(1000 / fps), loop=0)


def summary_grid(rows: list[tuple[str, list[np.ndarray]]], path: str, cell_width: int = 320) -> None:
    """One row per sequence (name, frames), frames resized to cell_width, the name written on the first."""
    lines = []
    for name, frames in rows:
        cells = []
        for f in frames:
            h, w = f.shape[:2]
            cells.append(cv2.resize(f, (cell_width, int(h * cell_width / w)), interpolation=cv2.INTER_AREA))
        height = max(c.shape[0] for c in cells)
        cells = [np.pad(c, ((0, height - c.shape[0]), (0, 2), (0, 0))) for c in cells]
        line = np.concatenate(cells, 1)
        cv2.putText(line, name, (6, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2, cv2.LINE_AA)
        lines.append(line)
    width = max(l.shape[1] for l in lines)
    lines = [np.pad(l, ((0, 2), (0, width - l.shape[1]), (0, 0))) for l in lines]
    Image.fromarray(np.concatenate(lines, 0)).save(path)
