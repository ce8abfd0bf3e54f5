"""SPD's measurement (paper 003): img2img edits of image sets and their similarity to the edits
of the clean images.

Edits: every image of a set is edited with every prompt by an SD-shaped img2img pipeline; image i
uses its own seed `seeds[i]` (a CPU generator per image), the same in every condition, so an
immunized edit and the clean edit differ only by the perturbation. Prompts may hold `{class}`,
filled with the image's class name.

Similarity (lower = stronger immunization): SSIM, PSNR and FSIM at native size through piq, and
VIFp on bicubic up-sampled pairs below 41 px (`vif_p[up<k>]`, k the smallest integer factor
reaching 41 px: `vif_p[up2]` at CIFAR's 32 px), since piq's VIFp needs images of at least 41 px;
at 41 px or more VIFp is measured at native size under its own name.
"""

from __future__ import annotations

import numpy as np

from diffsec import resume
from diffsec.metrics import quality

VIF_MIN = 41  # piq's vif_p refuses smaller images


def fill_prompt(prompt: str, class_name: str) -> str:
    return prompt.replace("{class}", class_name)


def edit_images(pipe, images: np.ndarray, prompts: list[str], class_names: list[str], seeds: list[int],
                strength: float, guidance: float, steps: int, batch: int,
                ckpt: resume.Checkpoint | None = None, progress: bool = True) -> np.ndarray:
    """uint8 P x N x H x W x 3: image n edited with prompt p (its class filled in), seeded seeds[n].
    Batches are independent: a killed run resumes at the next one (`resume.keep_part`)."""
    import torch
    from tqdm.auto import tqdm

    ckpt = ckpt or resume.disabled()
    jobs = [(p, lo) for p in range(len(prompts)) for lo in range(0, len(images), batch)]
    parts = resume.finished_parts(ckpt)
    bar = tqdm(total=len(jobs), initial=len(parts), desc="img2img", unit=" batch", disable=not progress)
    for c, (p, lo) in list(enumerate(jobs))[len(parts):]:
        idx = range(lo, min(lo + batch, len(images)))
        x = torch.from_numpy(np.ascontiguousarray(images[lo:idx[-1] + 1])).permute(0, 3, 1, 2).float() / 255
        gens = [torch.Generator("cpu").manual_seed(int(seeds[i])) for i in idx]
        out = pipe(prompt=[fill_prompt(prompts[p], class_names[i]) for i in idx], image=x.to(pipe.device),
                   strength=strength, guidance_scale=guidance, num_inference_steps=steps, generator=gens,
                   output_type="np").images
        parts.append({"images": torch.from_numpy((np.asarray(out) * 255).round().clip(0, 255).astype(np.uint8))})
        resume.keep_part(ckpt, c, parts[-1], len(jobs))
        bar.update(1)
    bar.close()
    flat = np.concatenate([p["images"].numpy() for p in parts]) if parts else images[:0]
    return flat.reshape(len(prompts), len(images), *images.shape[1:])


def vif_factor(size: int) -> int:
    """The smallest integer up-sampling that brings `size` px to VIF_MIN (1 = native; 32 px: 2)."""
    return -(-VIF_MIN // size)


def upsample(images: np.ndarray, factor: int) -> np.ndarray:
    """uint8 NHWC -> bicubic up-sampled by an integer factor, uint8 NHWC."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).double()
    y = F.interpolate(x, scale_factor=factor, mode="bicubic", align_corners=False)
    return y.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


def vif_name(size: int) -> str:
    k = vif_factor(size)
    return "vif_p" if k == 1 else f"vif_p[up{k}]"


def similarity(edited: np.ndarray, clean: np.ndarray) -> dict[str, np.ndarray]:
    """Per image pair: ssim, psnr, fsim at native size and VIFp (native, or up-sampled under the
    name `vif_p[up<k>]`: at CIFAR's 32 px `vif_p[up2]`)."""
    size = min(edited.shape[1:3])
    k = vif_factor(size)
    vif = quality.vif_p(upsample(edited, k), upsample(clean, k)) if k > 1 else quality.vif_p(edited, clean)
    return {"ssim": quality.ssim(edited, clean), "psnr": quality.psnr(edited, clean),
            vif_name(size): vif, "fsim": quality.fsim(edited, clean)}
