"""Semantic sensitivity maps (SZT Sec. 4.1, Eq. 6) and the paper's Fig. 3 layout.

SSM(x, t, e, n) = E_{e_Δn} [ || eps(z_t, t, c) - eps(z_t, t, c_Δn) ||²_ch ],  c = τ(e),
c_Δn = τ(e with e_n replaced by a random row of the token-embedding dictionary).

The replacement happens at the embedding level (a forward hook on the text encoder's token
embedding), so it works for any token, learned ones included, and the text encoder's own
self-attention then spreads the change exactly as it would for a real prompt. One z_t (one
posterior sample, one noise draw per timestep) is shared by c and every c_Δn: the expectation
is over the replacement only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from diffsec.errors import DiffsecError
from diffsec.personalize.tokens import base_embedding, install_tokens


def token_position(tokenizer, prompt: str, word: str) -> int:
    """Index n (0 = start token) of the first token of `word`'s first occurrence in `prompt`."""
    ids = tokenizer(prompt, truncation=True, max_length=tokenizer.model_max_length).input_ids
    sub = tokenizer(word, add_special_tokens=False).input_ids
    for n in range(len(ids) - len(sub) + 1):
        if sub and ids[n:n + len(sub)] == sub:
            return n
    raise DiffsecError(f"{word!r} is not a token sequence of {prompt!r}")


def _image_tensor(image) -> torch.Tensor:
    from diffsec.imageset import to_float

    if isinstance(image, np.ndarray):
        return to_float(image[None] if image.ndim == 3 else image)[:1]
    x = torch.as_tensor(image).float()
    return x[None] if x.ndim == 3 else x[:1]


@torch.no_grad()
def semantic_sensitivity_maps(pipe, image, prompt: str, position: int, timesteps: Sequence[int],
                              draws: int = 16, generator: torch.Generator | None = None,
                              replacements: torch.Tensor | None = None, upsample: bool = False,
                              chunk: int = 16) -> torch.Tensor:
    """SSMs of token `position` of `prompt` for one image, at each of `timesteps`.

    image: uint8 H x W x 3 or float 3 x H x W in [-1, 1]. replacements: explicit D x dim vectors
    for e_Δn (default: `draws` random rows of the base vocabulary's embedding table). Returns a
    float CPU tensor len(timesteps) x h x w at latent resolution, or H x W with `upsample`
    (bilinear).
    """
    from diffusers import DDPMScheduler

    te, tok, unet, vae = pipe.text_encoder, pipe.tokenizer, pipe.unet, pipe.vae
    dev = unet.device
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    ids = tok(prompt, padding="max_length", truncation=True, max_length=tok.model_max_length,
              return_tensors="pt").input_ids
    if not 0 <= position < ids.shape[1]:
        raise DiffsecError(f"token position {position} outside 0..{ids.shape[1] - 1}")
    table = base_embedding(te).weight
    if replacements is None:
        replacements = table[torch.randint(table.shape[0], (draws,), generator=g).to(table.device)]
    repl = replacements.to(table.device, table.dtype)

    # Row 0 of the batch keeps e; row j > 0 gets e_n := repl[j - 1].
    def swap(module, args, out):
        out = out.clone()
        out[1:, position] = repl
        return out

    handle = te.get_input_embeddings().register_forward_hook(swap)
    try:
        cond = te(ids.repeat(len(repl) + 1, 1).to(dev))[0].to(unet.dtype)
    finally:
        handle.remove()

    x = _image_tensor(image).to(dev, vae.dtype)
    post = vae.encode(x).latent_dist
    eps = torch.randn(post.mean.shape, generator=g).to(dev, post.mean.dtype)
    z0 = (post.mean + post.std * eps) * vae.config.scaling_factor
    sched = DDPMScheduler.from_config(pipe.scheduler.config)
    maps = []
    for t in timesteps:
        tt = torch.tensor([int(t)], device=dev)
        zt = sched.add_noise(z0, torch.randn(z0.shape, generator=g).to(dev, z0.dtype), tt)
        acc = torch.zeros(z0.shape[-2:], device=dev)
        for s in range(1, len(cond), chunk):
            # c itself rides along in every chunk: identical rows of one batch give identical
            # predictions, so a replacement equal to e_n scores exactly zero.
            c = torch.cat([cond[:1], cond[s:s + chunk]])
            pred = unet(zt.expand(len(c), -1, -1, -1).to(unet.dtype), tt.expand(len(c)),
                        encoder_hidden_states=c).sample.float()
            acc += (pred[1:] - pred[:1]).pow(2).sum(1).sum(0)
        maps.append(acc / len(repl))
    out = torch.stack(maps)
    if upsample:
        out = F.interpolate(out[:, None], size=tuple(x.shape[-2:]), mode="bilinear",
                            align_corners=False)[:, 0]
    return out.cpu()


def ssm_figure(path: str | os.PathLike, rows: list[tuple[str, np.ndarray, torch.Tensor]],
               timesteps: Sequence[int], title: str = "", norm: str = "column") -> None:
    """One row per (label, image uint8 HWC, maps T x h x w): the image, then a map per timestep.

    norm "column": one colour scale per timestep shared by all rows (compares clean vs poisoned,
    before vs after TI at equal t); "map": each map scaled to its own maximum."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    T = len(timesteps)
    maps = np.stack([np.asarray(m, dtype=np.float64) for _, _, m in rows])  # rows x T x h x w
    top = maps.max(axis=(0, 2, 3), keepdims=True) if norm == "column" else maps.max(axis=(2, 3), keepdims=True)
    maps = maps / np.where(top > 0, top, 1)
    fig, axes = plt.subplots(len(rows), T + 1, figsize=(1.5 * (T + 1), 1.6 * len(rows)), squeeze=False)
    for r, (label, image, _) in enumerate(rows):
        axes[r, 0].imshow(image, interpolation="nearest")
        axes[r, 0].set_ylabel(label, fontsize=7)
        for c in range(T):
            axes[r, c + 1].imshow(maps[r, c], cmap="inferno", vmin=0, vmax=1, interpolation="bilinear")
            if r == 0:
                axes[r, c + 1].set_title(f"t = {timesteps[c]}", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(), fig.savefig(path, dpi=120), plt.close(fig)


def sensitivity_figure(path: str | os.PathLike, pipe, images: dict[str, np.ndarray],
                       embeddings: dict[str, torch.Tensor], token: str, prompt: str,
                       timesteps: Sequence[int] = (100, 300, 500, 700, 900), draws: int = 16,
                       seed: int = 0) -> dict[tuple[str, str], torch.Tensor]:
    """SZT Fig. 3: SSMs of `token` in `prompt` for each image (e.g. clean, poisoned) under each
    embedding of the token (e.g. before = class-noun init, after = learned), at `timesteps`.

    Every cell uses the same seed (same posterior sample, noise and replacement rows), so cells
    differ only by image and embedding. Returns {(image label, embedding label): maps}."""
    out, rows = {}, []
    for e_label, vec in embeddings.items():
        install_tokens(pipe.text_encoder, pipe.tokenizer, [token], vec.reshape(1, -1))
        n = token_position(pipe.tokenizer, prompt, token)
        for i_label, image in images.items():
            maps = semantic_sensitivity_maps(pipe, image, prompt, n, timesteps, draws,
                                             torch.Generator().manual_seed(seed))
            out[(i_label, e_label)] = maps
            rows.append((f"{i_label}\n{e_label}", image, maps))
    ssm_figure(path, rows, list(timesteps), f"SSM of {token!r} in {prompt!r} ({draws} draws)")
    return out


def pick_images(sets: dict[str, str | os.PathLike | None], index: int, concept: str | None) -> dict[str, np.ndarray]:
    """One image (uint8 HWC) of each set given (label -> image-set path; None is left out): row
    `index`, or the first row of `concept` in the first set (every set keeps the same rows)."""
    from diffsec.imageset import load_images

    loaded = {k: (p, load_images(p, f"{k} image set")) for k, p in sets.items() if p is not None}
    path, first = next(iter(loaded.values()))
    if concept is not None:
        names = first.get("concept")
        rows = np.flatnonzero(names.astype(str) == concept) if names is not None else []
        if not len(rows):
            raise DiffsecError(f"concept {concept!r}: no such rows in {path}")
        index = int(rows[0])
    out = {}
    for label, (p, data) in loaded.items():
        if not 0 <= index < len(data["images"]):
            raise DiffsecError(f"{p}: no image row {index}")
        out[label] = data["images"][index]
    return out


def run_embeddings(path: str | os.PathLike, run: str) -> tuple[str, dict[str, torch.Tensor]]:
    """(token, {"before TI": class-noun init, "after TI": learned}) of `run` in a train-ti artifact
    (or its embeddings file, which holds no init)."""
    from pathlib import Path

    from diffsec.personalize.tokens import load_embeddings

    after, meta = load_embeddings(path)
    if run not in after:
        raise DiffsecError(f"run {run!r} is not in {path} ({sorted(after)})")
    init = Path(path) / "init.safetensors"
    before = load_embeddings(init)[0] if init.is_file() else {}
    return meta[run]["token"], {**({"before TI": before[run]} if run in before else {}), "after TI": after[run]}


def maps_arrays(maps: dict[tuple[str, str], torch.Tensor], timesteps: Sequence[int]) -> dict[str, np.ndarray]:
    """`sensitivity_figure`'s maps as arrays: maps is images x embeddings x timesteps x h x w."""
    images = list(dict.fromkeys(i for i, _ in maps))
    embeddings = list(dict.fromkeys(e for _, e in maps))
    return {"timesteps": np.array(timesteps), "images": np.array(images), "embeddings": np.array(embeddings),
            "maps": np.stack([np.stack([maps[(i, e)].numpy() for e in embeddings]) for i in images])}
