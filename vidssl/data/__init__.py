"""Clip sampling, datasets and augmentation."""
from vidssl.data.augment import FrameCrop, PatchGrid, WholeFrames, sample_rrc_boxes
from vidssl.data.datasets import ClipDataset, collate_clips, discover_sources
from vidssl.data.samplers import StepBatchSampler, clip_indices, frame_step, random_clip_indices

__all__ = ["ClipDataset", "collate_clips", "discover_sources", "StepBatchSampler", "clip_indices", "frame_step",
           "random_clip_indices", "FrameCrop", "PatchGrid", "WholeFrames", "sample_rrc_boxes"]
