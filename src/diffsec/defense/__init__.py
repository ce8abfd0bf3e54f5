"""Defenses against data poisons of personalization (SZT paper, shared/papers/004).

Purifiers map uint8 NHWC image sets to image sets of the same shape:
`jpeg` (JPEG round trip), `advclean` (AdverseCleaner: bilateral + guided filter),
`regen` (latent diffusion regeneration, Zhao et al.), `pdmpure` (pixel diffusion SDEdit, after
PDM-Pure); `purify` puts them behind one checked shape (settings -> images -> images).
Safe-Zone Training's training-time pieces live in `timesteps` (timestep samplers of Appendix H)
and `masking` (loss masking objectives of Appendix I, mask dilation of Appendix J, aligned flips).
`figures` draws the paper's perturbation histograms (Fig. 7) and sampler pdfs.
`sau` is Spatial Attention Unlearning (paper 001): a test-time latent blend against BadT2I backdoors.

Modules import torch/diffusers lazily where they can, so `import diffsec.defense.jpeg` stays light.
"""
