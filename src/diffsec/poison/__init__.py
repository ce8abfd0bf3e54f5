"""Per-image PGD poisons against latent diffusion models (paper 004, Sec. 3.3 and Appendix F).

Methods (Table 3 of the paper): ADM+/ADM- (AdvDM, Mist mode 0: ascend/descend the noise-prediction
loss), SDS+/SDS- (Xue et al. 2023: the same loss with the UNet Jacobian skipped), EA (encoder
attack, PhotoGuard / Mist mode 1: pull the latent toward a target image's), DA (PhotoGuard's
diffusion attack: pull a short differentiable img2img chain's output toward a target image).

Pixel scale, stated once: a budget is given as (eps, step, scale) meaning eps/scale and step/scale
in [0, 1] pixel units (the paper's kappa = 16/256, step 1/256). Images are uint8 on disk, [0, 1]
floats inside the PGD loop, and [-1, 1] only where the VAE reads or writes them. Distances are
reported in [0, 1] units and in uint8 levels (= [0, 1] units x 255). `run.py` runs a method over an
image set in batches that a killed run resumes from.
"""

from diffsec.poison.budget import Budget, distances, quantize
from diffsec.poison.ldm import LatentDiffusion
from diffsec.poison.objectives import METHODS, DAConfig, make_objective
from diffsec.poison.pgd import image_generators, pgd, poison_images

__all__ = ["Budget", "distances", "quantize", "LatentDiffusion", "METHODS", "DAConfig",
           "make_objective", "image_generators", "pgd", "poison_images"]
