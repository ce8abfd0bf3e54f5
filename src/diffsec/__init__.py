"""diffsec: a reproducible pipeline for the security of diffusion models."""

__version__ = "0.1.0"
