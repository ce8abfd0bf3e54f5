"""Backdoor attacks on pixel diffusion models: InvisibleDiffusion, TrojDiff, BadDiffusion."""
