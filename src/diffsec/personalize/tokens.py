"""Learned tokens in a CLIP text encoder, without copying or touching its embedding table.

`TokenEmbedding` wraps the encoder's frozen `token_embedding`: ordinary ids read the base table,
the ids of added tokens read rows of a small `extra` parameter (one row per token). Training
only `extra` makes "only the new embedding rows change" true by construction, R runs get R
distinct token ids in one text-encoder batch, and the same module serves the stock diffusers
pipeline at generation time (it calls `text_encoder(input_ids)`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from diffsec.errors import DiffsecError


class TokenEmbedding(nn.Module):
    def __init__(self, base: nn.Embedding, ids: list[int], vectors: torch.Tensor, table_size: int):
        super().__init__()
        self.base = base
        self.extra = nn.Parameter(vectors.detach().clone().to(base.weight.device, base.weight.dtype))
        # id -> row of `extra` (-1: an ordinary token). Sized for the tokenizer, which may be
        # longer than the embedding table once tokens are added.
        lookup = torch.full((max(table_size, base.num_embeddings, max(ids) + 1),), -1, dtype=torch.long)
        lookup[torch.as_tensor(ids)] = torch.arange(len(ids))
        self.register_buffer("lookup", lookup.to(base.weight.device), persistent=False)
        self.ids = list(ids)

    @property
    def weight(self) -> torch.Tensor:  # code reading `get_input_embeddings().weight` sees the base
        return self.base.weight

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        rows = self.lookup[input_ids]
        out = self.base(input_ids.clamp(max=self.base.num_embeddings - 1))
        return torch.where((rows >= 0).unsqueeze(-1), self.extra[rows.clamp(min=0)], out)


def base_embedding(text_encoder) -> nn.Embedding:
    emb = text_encoder.get_input_embeddings()
    return emb.base if isinstance(emb, TokenEmbedding) else emb


def token_vector(text_encoder, tokenizer, words: str) -> torch.Tensor:
    """Embedding of `words` (e.g. a class noun); the mean over its BPE tokens when it has several
    ("stuffed animal"), where the diffusers example would refuse a multi-token initializer."""
    ids = tokenizer(words, add_special_tokens=False).input_ids
    if not ids:
        raise DiffsecError(f"{words!r} has no tokens to initialize from")
    return base_embedding(text_encoder).weight[torch.as_tensor(ids)].detach().float().mean(0)


def install_tokens(text_encoder, tokenizer, tokens: list[str], vectors: torch.Tensor) -> TokenEmbedding:
    """Add `tokens` to the tokenizer (if new) and serve them from `vectors` (len(tokens) x D).

    Replaces any TokenEmbedding installed before: only the tokens given now are served (a token
    added earlier stays in the tokenizer but is no longer learned, so do not prompt with it)."""
    if len(set(tokens)) != len(tokens):
        raise DiffsecError(f"duplicate tokens {tokens}")
    if vectors.shape[0] != len(tokens):
        raise ValueError(f"{len(tokens)} tokens but {vectors.shape[0]} vectors")
    base = base_embedding(text_encoder)
    known = tokenizer.get_vocab()
    for t in tokens:
        if t in known and known[t] < base.num_embeddings and t not in tokenizer.get_added_vocab():
            raise DiffsecError(f"token {t!r} is already a word of the vocabulary; pick another")
    tokenizer.add_tokens([t for t in tokens if t not in tokenizer.get_added_vocab()])
    ids = tokenizer.convert_tokens_to_ids(tokens)
    for t, i in zip(tokens, ids, strict=True):
        if tokenizer(t, add_special_tokens=False).input_ids != [i]:
            raise DiffsecError(f"token {t!r} does not tokenize to one id; avoid spaces in it")
    module = TokenEmbedding(base, ids, vectors, len(tokenizer))
    text_encoder.set_input_embeddings(module)
    if text_encoder.get_input_embeddings() is not module:
        raise DiffsecError(f"{type(text_encoder).__name__}: cannot replace its token embedding")
    return module


def save_embeddings(path: str | os.PathLike, vectors: dict[str, torch.Tensor], meta: dict[str, dict]) -> Path:
    """One safetensors file keyed by run name; `meta` (run -> token, class, ...) in its header.

    The header holds ONE metadata key: safetensors writes its metadata map in an arbitrary order,
    so two keys would give the same embeddings two byte layouts (run to run)."""
    from safetensors.torch import save_file

    save_file({k: v.detach().float().cpu().contiguous() for k, v in vectors.items()}, str(path),
              metadata={"runs": json.dumps(meta, sort_keys=True)})
    return Path(path)


def load_embeddings(path: str | os.PathLike, only: list[str] | None = None
                    ) -> tuple[dict[str, torch.Tensor], dict[str, dict]]:
    """(run -> vector, run -> {token, class, ...}) from a file or a train-ti artifact directory;
    `only`: just these runs, in this order (each must be there)."""
    from safetensors import safe_open

    p = Path(path)
    if p.is_dir():
        p = p / "embeddings.safetensors"
    if not p.is_file():
        raise DiffsecError(f"{path}: no embeddings.safetensors")
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("runs", "{}"))
            vectors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - safetensors raises several types for a bad file
        raise DiffsecError(f"{p}: not a readable safetensors file ({e})") from None
    missing = sorted(set(vectors) - set(meta))
    if missing:
        raise DiffsecError(f"{p}: no token/class metadata for runs {missing}")
    absent = sorted(set(only or ()) - set(vectors))
    if absent:
        raise DiffsecError(f"{p}: no runs {absent} (it has {sorted(vectors)})")
    return {k: vectors[k] for k in only or vectors}, meta
