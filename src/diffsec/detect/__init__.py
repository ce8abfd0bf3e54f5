"""Detecting diffusion-generated images (SeDID) and membership inference on diffusion models."""
