"""JHMDB pose tracking by keypoint propagation, with the CRW reference's protocol (ajabri/videowalk
code/data/jhmdb.py, code/utils/test_utils.py process_pose, code/eval/eval_pck.py):

frames resized to 320x320; one heatmap per joint at feature resolution (a Gaussian of sigma 0.5 cells drawn
the hourglass way: a (6 sigma + 1)-wide patch around the joint) plus a background channel (1 where no joint
heatmap reaches); propagated like DAVIS labels; each joint decoded as the weighted mean of its top-3 cells,
invisible when its map is all zero; PCK over frames 1.. with the threshold relative to 0.6 x the diagonal of
the ground-truth joints' bounding box, per joint, then the mean over the 15 joints.
"""
from __future__ import annotations

import glob
import math
import os

import cv2
import numpy as np
import torch

from vidssl.eval.tasks import EvalContext, EvalTask, TaskResult, register_task

JOINTS = ("neck", "belly", "face", "right_shoulder", "left_shoulder", "right_hip", "left_hip", "right_elbow",
          "left_elbow", "right_knee", "left_knee", "right_wrist", "left_wrist", "right_ankle", "left_ankle")
# skeleton edges (child, parent) of the JHMDB puppet joints above
SKELETON = ((1, 0), (2, 0), (3, 0), (4, 0), (5, 1), (6, 1), (7, 3), (8, 4), (9, 5), (10, 6), (11, 7), (12, 8),
            (13, 9), (14, 10))
THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5)


def list_videos(root: str, split_list: str | None = None) -> list[str]:
    """Videos as 'class/video'. `split_list`: a text file of 'class/video' lines, or an official JHMDB split
    file '<class>_test_split1.txt' ('video.avi 2' = test), or a folder of those (all classes, test videos).
    Without one, every video under Rename_Images/."""
    if split_list:
        files = sorted(glob.glob(os.path.join(split_list, "*_test_split1.txt"))) if os.path.isdir(split_list) else [split_list]
        if not files:
            raise FileNotFoundError(f"no *_test_split1.txt files in {split_list}")
        videos = []
        for path in files:
            cls = os.path.basename(path).split("_test_split")[0]
            with open(path) as f:
                for line in f:
                    parts = line.split()
                    if not parts:
                        continue
                    if len(parts) == 2 and parts[1] in ("1", "2") and "_test_split" in path:
                        if parts[1] == "2":
                            videos.append(f"{cls}/{os.path.splitext(parts[0])[0]}")
                    else:
                        videos.append(parts[0].strip("/"))
        return videos
    base = os.path.join(root, "Rename_Images")
    if not os.path.isdir(base):
        raise FileNotFoundError(f"{base} not found: is {root} a JHMDB folder (Rename_Images/, joint_positions/)?")
    return sorted(f"{c}/{v}" for c in os.listdir(base) for v in os.listdir(os.path.join(base, c))
                  if os.path.isdir(os.path.join(base, c, v)))


def load_joints(root: str, video: str) -> np.ndarray:
    """Ground-truth joints (T, 15, 2), x then y, 0-based pixels (the .mat files are 1-based)."""
    from scipy.io import loadmat

    path = os.path.join(root, "joint_positions", video, "joint_positions.mat")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found")
    pos = loadmat(path)["pos_img"]  # (2, 15, T)
    return np.transpose(pos, (2, 1, 0)).astype(np.float64) - 1


def joint_heatmaps(points: np.ndarray, size: tuple[int, int], sigma: float = 0.5) -> np.ndarray:
    """Heatmaps (1 + J, h, w): background, then one per joint (points (J, 2) in feature cells, x then y).
    Each joint's Gaussian (peak 1) covers the int(6 sigma + 1)-wide patch starting at int(p - 3 sigma),
    centred on its middle cell (the hourglass draw_labelmap rule the reference uses)."""
    h, w = size
    maps = np.zeros((len(points), h, w), np.float32)
    n = int(math.ceil(6 * sigma + 1))
    for j, (px, py) in enumerate(points):
        ul_x, ul_y = int(px - 3 * sigma), int(py - 3 * sigma)
        if ul_x >= w or ul_y >= h or ul_x + n <= 0 or ul_y + n <= 0:
            continue
        cx, cy = ul_x + (6 * sigma + 1) // 2, ul_y + (6 * sigma + 1) // 2
        xs, ys = np.arange(ul_x, ul_x + n), np.arange(ul_y, ul_y + n)
        g = np.exp(-((xs[None, :] - cx) ** 2 + (ys[:, None] - cy) ** 2) / (2 * sigma ** 2))
        xv, yv = (xs >= 0) & (xs < w), (ys >= 0) & (ys < h)
        maps[j][np.ix_(ys[yv], xs[xv])] = g[np.ix_(yv, xv)]
    background = (maps.sum(0) == 0).astype(np.float32)
    return np.concatenate([background[None], maps])


def decode_keypoints(pred: torch.Tensor, topk: int = 3) -> np.ndarray:
    """Propagated maps (1 + J, h, w) -> (J, 2) cell coordinates (x, y): the weighted mean of each joint's
    top-k cells; NaN where the joint's map is all zero."""
    maps = pred[1:].flatten(1)  # (J, hw)
    w = pred.shape[-1]
    vals, idx = maps.topk(min(topk, maps.shape[1]), dim=1)
    wts = vals / vals.sum(1, keepdim=True)
    xy = torch.stack([((idx % w).float() * wts).sum(1), ((idx // w).float() * wts).sum(1)], 1).cpu().numpy()
    xy[(maps.sum(1) == 0).cpu().numpy()] = np.nan
    return xy


def pck(preds: list[np.ndarray], gts: list[np.ndarray], thresholds=THRESHOLDS) -> np.ndarray:
    """PCK (%) per threshold: (len(thresholds), J + 1), the last column the mean over joints.

    preds, gts: per video (T, J, 2) pixels. Frame 0 (given) is skipped; joints predicted invisible (NaN)
    are skipped; distances are divided by 0.6 x the diagonal of the box around the ground-truth joints that
    are predicted visible in that frame (eval_pck.py)."""
    J = gts[0].shape[1]
    dists = [[] for _ in range(J)]
    for pred, gt in zip(preds, gts):
        T = min(len(pred), len(gt))
        for t in range(1, T):
            vis = ~np.isnan(pred[t]).any(1)
            if not vis.any():
                continue
            box = gt[t][vis]
            scale = 0.6 * np.linalg.norm(box.max(0) - box.min(0))
            with np.errstate(divide="ignore", invalid="ignore"):  # a one-joint box: inf, never within threshold
                d = np.linalg.norm(pred[t] - gt[t], axis=1) / scale
            for j in np.flatnonzero(vis):
                dists[j].append(d[j])
    table = np.zeros((len(thresholds), J + 1))
    for i, th in enumerate(thresholds):
        per_joint = [100.0 * np.mean(np.asarray(d) <= th) if d else np.nan for d in dists]
        table[i, :J] = per_joint
        table[i, J] = np.nanmean(per_joint)
    return table


def draw_skeleton(frame: np.ndarray, xy: np.ndarray) -> np.ndarray:
    out = frame.copy()
    colors = [tuple(int(c) for c in cv2.applyColorMap(np.uint8([[i * 17]]), cv2.COLORMAP_HSV)[0, 0][::-1])
              for i in range(len(JOINTS))]
    for child, parent in SKELETON:
        if not (np.isnan(xy[child]).any() or np.isnan(xy[parent]).any()):
            cv2.line(out, tuple(int(v) for v in xy[child]), tuple(int(v) for v in xy[parent]), colors[child], 2,
                     cv2.LINE_AA)
    for j, p in enumerate(xy):
        if not np.isnan(p).any():
            cv2.circle(out, (int(p[0]), int(p[1])), 3, colors[j], -1, cv2.LINE_AA)
    return out


def run_jhmdb(root: str, out: str, encoder, videos: list[str], device: torch.device, prop: dict | None = None,
              size: int = 320, overlays: bool = True, clip_len: int = 8, input_size: str = "native") -> np.ndarray:
    """Propagate frame-0 joints through every video; writes OUT/<video>/keypoints.npy (T, 15, 2) (x, y in
    original pixels, NaN = invisible), pck.csv and skeleton overlays. Returns the PCK table. Frames are read at
    `input_size` (vidssl/eval/protocol.py; "native" = the reference's `size` x `size`); keypoints are decoded
    in original pixels whatever it is."""
    from tqdm import tqdm

    from vidssl.eval.encoder import frame_features
    from vidssl.eval.overlays import save_video
    from vidssl.eval.propagate import propagate_labels
    from vidssl.eval.protocol import input_shape
    from vidssl.io.frames import list_frames, read_image

    preds, gts = [], []
    for video in tqdm(videos, desc="videos"):
        paths = list_frames(os.path.join(root, "Rename_Images", video))
        if not paths:
            raise FileNotFoundError(f"no frames in {os.path.join(root, 'Rename_Images', video)}")
        orig = [read_image(p) for p in paths]
        H, W = orig[0].shape[:2]
        h_in, w_in = input_shape(input_size, H, W, native=(size, size))
        frames = torch.from_numpy(np.stack([cv2.resize(f, (w_in, h_in), interpolation=cv2.INTER_LINEAR) for f in orig]))
        gt = load_joints(root, video)
        feats = frame_features(encoder, frames, device, clip_len=clip_len)
        h, w = feats.shape[-2:]
        cells = gt[0] * np.array([w / W, h / H])  # original pixels -> feature cells of the resized frame
        labels0 = torch.from_numpy(joint_heatmaps(cells, (h, w))).to(device)
        soft = propagate_labels(feats, labels0, **(prop or {}))
        xy = np.stack([decode_keypoints(soft[t]) for t in range(len(paths))])  # cells
        xy = xy * np.array([W / w, H / h])  # cells -> original pixels (eval_pck.py: x / feat_res * width)
        vdir = os.path.join(out, video)
        os.makedirs(vdir, exist_ok=True)
        np.save(os.path.join(vdir, "keypoints.npy"), xy)
        if overlays:
            save_video([draw_skeleton(f, p) for f, p in zip(orig, xy)], os.path.join(vdir, "skeleton.mp4"))
        preds.append(xy)
        gts.append(gt)
    table = pck(preds, gts)
    with open(os.path.join(out, "pck.csv"), "w") as f:
        f.write("threshold," + ",".join(JOINTS) + ",mean\n")
        for th, row in zip(THRESHOLDS, table):
            f.write(f"{th}," + ",".join(f"{v:.2f}" for v in row) + "\n")
    return table


@register_task("jhmdb")
class JhmdbTask(EvalTask):
    """JHMDB pose tracking: the 15 joints of the first frame propagated as heatmaps (the CRW reference's
    protocol), PCK at 0.1..0.5 of the ground-truth joints' box."""

    help = "JHMDB PCK (keypoint propagation)"

    @staticmethod
    def add_arguments(parser) -> None:
        parser.add_argument("--jhmdb-root", required=True, help="JHMDB folder (Rename_Images/, joint_positions/)")
        parser.add_argument("--split-list",
                            help="a list of class/video lines, a *_test_split1.txt, or a folder of them")

    def data_roots(self) -> list[str]:
        return [self.args.jhmdb_root]

    def run(self, ctx: EvalContext) -> TaskResult:
        videos = list_videos(self.args.jhmdb_root, self.args.split_list)
        print(f"JHMDB: {len(videos)} video(s); encoder: {ctx.description}")
        table = run_jhmdb(self.args.jhmdb_root, ctx.out, ctx.encoder, videos, ctx.device, ctx.protocol.propagation(),
                          overlays=ctx.overlays, clip_len=ctx.protocol.clip_len, input_size=ctx.protocol.input_size)
        headline = {"PCK@0.1": table[0, -1], "PCK@0.2": table[1, -1]}
        return TaskResult(headline=headline, rows=[{"video": v} for v in videos],
                          report=f"PCK@0.1 {table[0, -1]:.2f}   PCK@0.2 {table[1, -1]:.2f}   (pck.csv in {ctx.out})",
                          details={"dataset": "jhmdb", "input_size": ctx.protocol.input_size})
