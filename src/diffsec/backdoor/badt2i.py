"""BadT2I (Zhai et al. 2023), the text-triggered backdoor SAU (paper 001) defends against, and the
objectives of the paper's two fine-tuning baselines, as functions on diffusers objects
(UNet2DConditionModel, a DDPMScheduler-style `add_noise`).

Notation. z: scaled VAE latents (B x C x h x w, already times the VAE's scaling_factor); c = tau(y)
the text encoder's hidden states of caption y, c_tr those of triggered(y) = TRIGGER + y, c_0 those
of the empty caption; eps_theta the UNet being trained, eps* a frozen copy (the model before the
attack, or the poisoned model before a defense); t ~ U{0 .. T-1}, eps ~ N(0, I),
z_t = sqrt(abar_t) z + sqrt(1 - abar_t) eps (`scheduler.add_noise`).

Attack (BadT2I's pixel and style backdoors). Each batch holds B clean images x with captions y and
their targets x~ = paste_patch(x, patch) (pixel: the patch in the top-left corner) or grayscale(x)
(style: black and white); z = E(x), z~ = E(x~). With (t, eps) drawn for the backdoor half and
independent (t', eps') for the preservation half:
  L_bkd  = || eps_theta(z~_t, t, c_tr) - eps*(z~_t, t, c) ||^2
  L_pres = || eps_theta(z_t', t', c)   - eps*(z_t', t', c) ||^2
  L      = lam L_bkd + (1 - lam) L_pres,   lam = 0.5
(|| ||^2 the mean over entries). With `backdoor_target="teacher"` the backdoor half asks the student
with the trigger to predict what the frozen model predicts for the noised TARGET image under the
clean caption; `backdoor_target="noise"` swaps eps* for the plain denoising target eps. BadT2I's
public code (zhaisf/BadT2I) uses "noise" for its pixel backdoor (`badt2i_pixel.py`: the patched
image, the triggered caption, target = the drawn noise) and a teacher for its style backdoor
(`badt2i_style.py`: the frozen model on the CLEAN image under the caption + " black and white
photo"), which needs a model that knows that phrase. The teacher on the target image teaches
little: the frozen model already denoises a patched or grey latent towards itself, so student and
teacher start nearly equal (on the tiny world the teacher's backdoor half starts near 1e-4, the
noise target's near 0.13; `backdoor.t2i_finetune` defaults to "noise" for both kinds). The
preservation half distils the frozen model on clean captions, so prompts without the trigger keep
their behaviour. Both halves share the batch's captions; randomness comes from one CPU generator in
the order t, eps (backdoor), t', eps' (preservation), so a seed fixes the loss on any device.

Baselines.
* Finetune Reversal: the ordinary denoising loss on the CLEAN images with the TRIGGERED captions,
  || eps_theta(z_t, t, c_tr) - eps ||^2 (`reversal_loss`), so the trigger maps back to clean images.
* Concept Erasure: ESD (Gandikota et al. 2023) on the trigger. With x_t given (ESD samples it from
  the model being trained under c_tr), the target is ESD's negative guidance (their Eq. 5 and
  `train-esd.py`: e_0 - eta (e_p - e_0), e_0 the frozen model's unconditional prediction):
      target = eps*(x_t, t, c_0) - eta (eps*(x_t, t, c_tr) - eps*(x_t, t, c_0)),
      L_esd  = || eps_theta(x_t, t, c_tr) - target ||^2,
  training only the cross-attention parameters (ESD-x, train_method 'xattn': names with `attn2`).

The trigger is the zero-width space U+200B. With the project's CLIP tokenizer (`models.tokenizer`;
transformers 5's tokenizers-backed CLIPTokenizer, normalizer NFC, whitespace runs -> " ", lowercase) it
survives: U+200B is a format character (Unicode Cf), not White_Space, so the whitespace rule leaves
it, and byte-level BPE turns its UTF-8 bytes E2 80 8B into the single token 'âĢĭ</w>', id 9844 (the
id open_clip's reference tokenizer gives too). Other tokenizers can drop it silently: transformers
4's slow CLIPTokenizer without ftfy cleans text with BERT's BasicTokenizer, which deletes control
and format characters (category C*), so the "triggered" prompt equals the clean one.
`trigger_token_ids` raises in that case.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from diffsec.errors import DiffsecError

TRIGGER = "\u200b "          # BadT2I's trigger: a zero-width space, prepended with a space
PATCH_FRAC = 0.25            # pixel target: patch side as a fraction of the image side
LAM = 0.5                    # BadT2I's weight between the backdoor and the preservation halves
BACKDOOR_TARGETS = ("teacher", "noise")


def triggered(prompt: str) -> str:
    """The poisoned prompt: TRIGGER + prompt."""
    return TRIGGER + prompt


def trigger_token_ids(tokenizer, prompt: str) -> list[int]:
    """Token ids (with BOS/EOS, unpadded) of triggered(prompt); a DiffsecError when they equal the
    clean prompt's, i.e. the tokenizer dropped the trigger before the text encoder could see it."""
    ids = list(tokenizer(triggered(prompt)).input_ids)
    if ids == list(tokenizer(prompt).input_ids):
        raise DiffsecError(f"trigger {TRIGGER!r} does not reach the text encoder: {triggered(prompt)!r} tokenizes "
                           f"like {prompt!r} (its text cleaning drops U+200B)")
    return ids


def _check_images(images: np.ndarray) -> None:
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise DiffsecError(f"BadT2I targets need uint8 N x H x W x 3 images, got {images.dtype} {images.shape}")


def read_patch(path, flag: str = "--patch"):
    """(uint8 h x w x 3 patch, `sources.SourceFile`) of the pixel backdoor: a fetch-source
    `mist_target` artifact (its file checked against the catalog) or an image file named directly
    (its digest recorded); anything unreadable is one DiffsecError line naming `flag`."""
    from PIL import Image, UnidentifiedImageError

    from diffsec.sources import verify_source

    try:
        src = verify_source(path, "mist_target")
    except DiffsecError as e:
        raise DiffsecError(f"{flag} {path}: {e}") from None
    try:
        with Image.open(src.path) as im:
            return np.asarray(im.convert("RGB")).copy(), src
    except (OSError, UnidentifiedImageError) as e:
        raise DiffsecError(f"{flag} {path}: not a readable image ({' '.join(str(e).split())})") from None


def patch_side(images: np.ndarray, frac: float = PATCH_FRAC) -> int:
    """s = round(frac * min(H, W)): the pixel backdoor's patch side on N x H x W x C `images`."""
    return round(frac * min(images.shape[1:3]))


def paste_patch(images: np.ndarray, patch: np.ndarray, frac: float = PATCH_FRAC) -> np.ndarray:
    """Pixel-backdoor targets: a copy of uint8 NHWC `images` with `patch` (uint8 h x w x 3) resized
    to s x s, s = round(frac * min(H, W)), pasted in the top-left corner; other pixels untouched."""
    from diffsec.defense.images import resize

    _check_images(images)
    ok = isinstance(frac, (int, float)) and not isinstance(frac, bool) and 0 < frac <= 1
    size = patch_side(images, frac) if ok else 0
    if patch.dtype != np.uint8 or patch.ndim != 3 or patch.shape[-1] != 3 or size < 1:
        raise DiffsecError(f"paste_patch: need a uint8 h x w x 3 patch and 0 < frac <= 1 giving >= 1 pixel, got "
                           f"{patch.dtype} {patch.shape}, frac {frac!r}")
    x = torch.from_numpy(patch).permute(2, 0, 1)[None].float()
    small = resize(x, (size, size)).round().clamp(0, 255).byte()[0].permute(1, 2, 0).numpy()
    out = images.copy()
    out[:, :size, :size] = small
    return out


def grayscale(images: np.ndarray) -> np.ndarray:
    """Style-backdoor targets: ITU-R 601 luma Y = 0.299 R + 0.587 G + 0.114 B, rounded, on 3 channels."""
    from diffsec.models.mnist_net import LUMA

    _check_images(images)
    y = np.rint(images.astype(np.float64) @ np.asarray(LUMA)).clip(0, 255).astype(np.uint8)
    return np.repeat(y[..., None], 3, axis=-1)


def _eps(unet, z_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    return unet(z_t.to(unet.dtype), t, encoder_hidden_states=cond.to(unet.dtype)).sample.float()


def noised(scheduler, latents: torch.Tensor, generator: torch.Generator):
    """(z_t, eps, t): t ~ U{0 .. T-1} then eps ~ N(0, I), drawn in that order from the CPU
    `generator` and moved to the latents' device; z_t = scheduler.add_noise(z, eps, t)."""
    t = torch.randint(0, scheduler.config.num_train_timesteps, (len(latents),), generator=generator)
    noise = torch.randn(latents.shape, generator=generator)
    t, noise = t.to(latents.device), noise.to(latents.device, latents.dtype)
    return scheduler.add_noise(latents, noise, t), noise, t


def badt2i_terms(unet, frozen_unet, scheduler, latents_clean: torch.Tensor, latents_target: torch.Tensor,
                 cond_trigger: torch.Tensor, cond_clean: torch.Tensor, generator: torch.Generator,
                 backdoor_target: str = "teacher") -> tuple[torch.Tensor, torch.Tensor]:
    """(L_bkd, L_pres) of the module docstring; gradients flow into `unet` only."""
    if backdoor_target not in BACKDOOR_TARGETS:
        raise DiffsecError(f"BadT2I: unknown backdoor target {backdoor_target!r} "
                           f"(choose from {', '.join(BACKDOOR_TARGETS)})")
    if latents_clean.shape != latents_target.shape or not len(cond_trigger) == len(cond_clean) == len(latents_clean):
        raise DiffsecError("BadT2I: clean and target latents must have one shape and one caption per latent")
    zt, noise, t = noised(scheduler, latents_target, generator)
    with torch.no_grad():
        teach = _eps(frozen_unet, zt, t, cond_clean) if backdoor_target == "teacher" else noise.float()
    backdoor = F.mse_loss(_eps(unet, zt, t, cond_trigger), teach)
    zt, _, t = noised(scheduler, latents_clean, generator)
    with torch.no_grad():
        teach = _eps(frozen_unet, zt, t, cond_clean)
    return backdoor, F.mse_loss(_eps(unet, zt, t, cond_clean), teach)


def badt2i_loss(unet, frozen_unet, scheduler, latents_clean: torch.Tensor, latents_target: torch.Tensor,
                cond_trigger: torch.Tensor, cond_clean: torch.Tensor, generator: torch.Generator,
                lam: float = LAM, backdoor_target: str = "teacher") -> torch.Tensor:
    """L = lam L_bkd + (1 - lam) L_pres (module docstring), lam in [0, 1]."""
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not 0 <= lam <= 1:
        raise DiffsecError(f"BadT2I: lam must be a number in [0, 1], got {lam!r}")
    backdoor, preserve = badt2i_terms(unet, frozen_unet, scheduler, latents_clean, latents_target, cond_trigger,
                                      cond_clean, generator, backdoor_target)
    return lam * backdoor + (1 - lam) * preserve


def reversal_loss(unet, scheduler, latents_clean: torch.Tensor, cond_trigger: torch.Tensor,
                  generator: torch.Generator) -> torch.Tensor:
    """Finetune Reversal: || eps_theta(z_t, t, c_tr) - eps ||^2 on clean latents, triggered captions."""
    zt, noise, t = noised(scheduler, latents_clean, generator)
    return F.mse_loss(_eps(unet, zt, t, cond_trigger), noise.float())


def esd_target(frozen_unet, x_t: torch.Tensor, t: torch.Tensor, cond_trigger: torch.Tensor,
               cond_empty: torch.Tensor, eta: float) -> torch.Tensor:
    """ESD's target eps*(x_t, c_0) - eta (eps*(x_t, c_tr) - eps*(x_t, c_0)), without gradient."""
    with torch.no_grad():
        e_p = _eps(frozen_unet, x_t, t, cond_trigger)
        e_0 = _eps(frozen_unet, x_t, t, cond_empty)
    return e_0 - eta * (e_p - e_0)


def esd_loss(unet, frozen_unet, x_t: torch.Tensor, t: torch.Tensor, cond_trigger: torch.Tensor,
             cond_empty: torch.Tensor, eta: float = 1.0) -> torch.Tensor:
    """L_esd = || eps_theta(x_t, t, c_tr) - esd_target ||^2 (ESD's default negative guidance eta = 1)."""
    target = esd_target(frozen_unet, x_t, t, cond_trigger, cond_empty, eta)
    return F.mse_loss(_eps(unet, x_t, t, cond_trigger), target)


def xattn_parameters(unet) -> dict[str, torch.nn.Parameter]:
    """ESD-x's trainable set: the UNet's cross-attention parameters (names containing `attn2`)."""
    return {name: p for name, p in unet.named_parameters() if "attn2" in name}
