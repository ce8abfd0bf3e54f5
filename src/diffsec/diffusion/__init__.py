"""Diffusion schedules, sampling from any initial noise, inversion."""
