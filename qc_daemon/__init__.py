"""mrsqc: real-time quality control for single-voxel 1H MR spectroscopy."""

__version__ = "0.1.0"
