"""vidssl: self-supervised learning from video, centred on space-time correspondence."""
__version__ = "0.1.0"
