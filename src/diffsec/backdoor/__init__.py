"""Backdoor attacks on pixel diffusion models: InvisibleDiffusion, TrojDiff, BadDiffusion; and on
text-to-image models: BadT2I (`badt2i`, with the objectives of the SAU paper's baselines)."""
