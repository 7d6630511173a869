"""detdistill: detector-guided dataset distillation with diffusion models."""

__version__ = "0.5.0"
