"""Clip sampling, datasets and augmentation."""
from vidssl.data.augment import FrameCrop, PatchGrid, WholeFrames, sample_rrc_boxes
from vidssl.data.datasets import VideoDataset, collate, discover_sources
from vidssl.data.samplers import StepBatchSampler, clip_indices, frame_step, random_clip_indices
from vidssl.data.spec import ClipRequest, DataSpec

__all__ = ["VideoDataset", "collate", "discover_sources", "StepBatchSampler", "clip_indices", "frame_step",
           "random_clip_indices", "FrameCrop", "PatchGrid", "WholeFrames", "sample_rrc_boxes", "ClipRequest",
           "DataSpec"]
