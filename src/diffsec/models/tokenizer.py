"""The real CLIP BPE tokenizer, built offline from the vocabulary open_clip ships in its wheel.

No hub is reachable, but `bpe_simple_vocab_16e6.txt.gz` is the very merge list OpenAI CLIP (and
so SD 1.5's tokenizer) uses. Rebuilding vocab.json + merges.txt from it the way CLIP does gives
a Hugging Face `CLIPTokenizer` with the same ids as SD's, so prompts, textual-inversion tokens
and a later swap to the real SD 1.5 text encoder all see the same token ids.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
MAX_LENGTH = 77
# CLIP keeps the first 49152 - 256 - 2 merges (after the version line), so that byte symbols,
# their '</w>' forms, the merges and the two specials fill a 49408-entry vocabulary.
N_MERGES = 49152 - 256 - 2


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP/GPT-2's reversible map from bytes to printable unicode characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def _bpe_path() -> Path:
    from open_clip.tokenizer import default_bpe

    return Path(default_bpe())


def write_clip_tokenizer(out: str | os.PathLike) -> Path:
    """Write vocab.json, merges.txt and the tokenizer config SD 1.5 uses into `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lines = gzip.open(_bpe_path()).read().decode("utf-8").split("\n")[1:1 + N_MERGES]
    merges = [tuple(line.split()) for line in lines]
    symbols = list(_bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [BOS, EOS]
    (out / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
    # HF skips the first line of merges.txt (a version header), like CLIP skips the file's header.
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n",
                                    encoding="utf-8")
    # SD 1.5 pads with <|endoftext|>; the pipeline pads every prompt to model_max_length.
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": MAX_LENGTH, "bos_token": BOS,
              "eos_token": EOS, "unk_token": EOS, "pad_token": EOS, "do_lower_case": True}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    return out


def clip_tokenizer(cache_dir: str | os.PathLike):
    """A `transformers.CLIPTokenizer` with CLIP's vocabulary, built in `cache_dir` if missing."""
    from transformers import CLIPTokenizer

    cache_dir = Path(cache_dir)
    if not (cache_dir / "merges.txt").exists():
        write_clip_tokenizer(cache_dir)
    return CLIPTokenizer.from_pretrained(str(cache_dir))
