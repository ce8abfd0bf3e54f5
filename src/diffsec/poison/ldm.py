"""The parts of a StableDiffusionPipeline a poison differentiates through, frozen.

Works on any diffusers SD-shaped pipeline (the tiny world, SD 1.5): pixels enter in [0, 1],
the VAE sees [-1, 1], latents are scaled by `vae.config.scaling_factor` as in training.
"""

from __future__ import annotations

import torch

from diffsec.errors import DiffsecError


class LatentDiffusion:
    def __init__(self, pipe, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.vae, self.unet = pipe.vae.to(self.device), pipe.unet.to(self.device)
        self.text_encoder, self.tokenizer = pipe.text_encoder.to(self.device), pipe.tokenizer
        for m in (self.vae, self.unet, self.text_encoder):
            m.eval().requires_grad_(False)  # only the pixels get gradients
        self.scheduler = pipe.scheduler
        if self.scheduler.config.get("prediction_type", "epsilon") != "epsilon":
            raise DiffsecError("the poisons attack an epsilon-prediction model; this scheduler "
                               f"predicts {self.scheduler.config.prediction_type!r}")
        self.scaling = float(self.vae.config.scaling_factor)
        self.T = int(self.scheduler.config.num_train_timesteps)
        self.alphas_cumprod = self.scheduler.alphas_cumprod.to(self.device, torch.float32)
        self.latent_channels = int(self.vae.config.latent_channels)
        self.down = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self._text: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def embed(self, prompts: list[str]) -> torch.Tensor:
        """CLIP text embeddings, padded to the tokenizer's length as the SD pipeline does."""
        for p in set(prompts) - set(self._text):
            ids = self.tokenizer([p], padding="max_length", max_length=self.tokenizer.model_max_length,
                                 truncation=True, return_tensors="pt").input_ids
            self._text[p] = self.text_encoder(ids.to(self.device))[0][0]
        return torch.stack([self._text[p] for p in prompts])

    def encode(self, x01: torch.Tensor, generators: list[torch.Generator] | None = None) -> torch.Tensor:
        """Scaled latent of [0, 1] pixels: the posterior mean, or one posterior sample per image
        drawn from that image's generator (what LDM training and textual inversion see)."""
        post = self.vae.encode((x01 * 2 - 1).to(self.vae.dtype)).latent_dist
        z = post.mean
        if generators is not None:
            noise = torch.stack([torch.randn(z.shape[1:], generator=g) for g in generators])
            z = z + post.std * noise.to(z.device, z.dtype)
        return z.float() * self.scaling

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Scaled latent -> pixels in [0, 1] (unclamped, so gradients are not cut at the edges)."""
        x = self.vae.decode((z / self.scaling).to(self.vae.dtype)).sample
        return (x.float() + 1) / 2

    def draw(self, generators: list[torch.Generator], shape) -> tuple[torch.Tensor, torch.Tensor]:
        """A uniform timestep in [0, T) and a standard normal noise per image, from its generator."""
        t = torch.cat([torch.randint(0, self.T, (1,), generator=g) for g in generators])
        eps = torch.stack([torch.randn(tuple(shape), generator=g) for g in generators])
        return t.to(self.device), eps.to(self.device)

    def noisy(self, z0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps (Eq. 1 of the paper)."""
        a = self.alphas_cumprod[t].view(-1, 1, 1, 1)
        return a.sqrt() * z0 + (1 - a).sqrt() * eps

    def eps_pred(self, z_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        dtype = self.unet.dtype
        return self.unet(z_t.to(dtype), t, encoder_hidden_states=cond.to(dtype)).sample.float()
