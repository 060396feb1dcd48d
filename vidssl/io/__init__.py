"""Decoding: videos (several backends) and frame folders, behind one reader interface; codec motion vectors."""
from vidssl.io.frames import FrameFolderReader, list_frames, read_davis_mask, read_image, write_davis_mask
from vidssl.io.motion_vectors import MotionVectorReader, read_motion_vectors
from vidssl.io.video import VIDEO_EXTENSIONS, VideoDecodeError, VideoReader, available_backends

__all__ = ["VideoReader", "FrameFolderReader", "VideoDecodeError", "available_backends", "open_video",
           "VIDEO_EXTENSIONS", "list_frames", "read_image", "read_davis_mask", "write_davis_mask",
           "MotionVectorReader", "read_motion_vectors"]


def open_video(path: str, backend: str = "auto", device: str = "cpu", fps: float = 0.0):
    """A reader for a video file or a frame folder (fps for folders comes from the caller)."""
    import os

    if os.path.isdir(path):
        return FrameFolderReader(path, fps=fps)
    return VideoReader(path, backend=backend, device=device)
