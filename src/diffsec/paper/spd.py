"""The shape of SPD's Table 1 (paper 003): rows are (edit prompt, split), columns are the
perturbation, metrics the img2img output's similarity to the un-immunized edit (higher = the
edit survived; lower = better immunization).

The paper edits with Stable Diffusion 1.5 img2img, 100 ImageNet images at 512 x 512 split 64
train (the universal perturbation is fit on these) : 36 test, eps in (4, 13, 22, 31, 40)/255 and
500 iterations per eps. "Baseline" is uniform random noise in the same eps ball, "Ours" the
universal perturbation. The paper does not say which eps (or which average over eps) Table 1
reports, nor which of PGD / Adam and which objective fills "Ours"; its Figs. 1-2 plot the metrics
against eps.
"""

from __future__ import annotations

PROMPTS = {"P1": "make it like a watercolor painting", "P2": "apply sunset lighting",
           "P3": "add some snow", "P4": ""}
SPLITS = ("Train", "Test")
ROWS = [f"{p} · {s}" for p in PROMPTS for s in SPLITS]
COLUMNS = {"Baseline": "random", "Ours": "universal"}  # Table 1 column -> perturbation kind
METRICS = ("ssim", "psnr", "vif_p", "fsim")            # diffsec.metrics names, Table 1's order
EPS_255 = (4, 13, 22, 31, 40)                           # eps grid, in 1/255 of the [0, 1] range
ITERS = 500
N_TRAIN, N_TEST = 64, 36
