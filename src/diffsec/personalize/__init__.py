"""Personalization: batched textual inversion, generation from learned tokens, and semantic
sensitivity maps (SZT Sec. 3.2, 4.1, 5.1.2).

  runs.py               the run-spec format (JSON list) -> validated TIRun objects
  textual_inversion.py  BatchedTextualInversion: R runs, one text-encoder and one UNet call a step
  optim.py              RowAdamW: per-run AdamW state in one R x D tensor
  tokens.py             learned tokens served beside a frozen CLIP embedding table; safetensors I/O
  generate.py           images for prompt templates from many learned tokens at once (resumable by batch)
  ssm.py                Eq. 6 sensitivity maps and the Fig. 3 panel
"""
