"""Backdoor target distributions, named by spec strings:

* `cifar10:<class>`, `celeba:<class>`: a class of the dataset the model was trained on (In-D; the
  paper's are 7: CIFAR-10's horse, CelebA's makeup + open mouth + smile). Trains on the train
  split's images of that class; attack precision is measured against the test split's.
* `mnist:<digit>`: an MNIST digit (Out-D; the paper's is 8), resized to the model's resolution and
  made RGB. Only the held-out MNIST split is used, so the classifier that scores ASR (trained on
  the other split) has never seen these digits.
* `mnist:<digit>:<index>`: ONE image, the index-th held-out digit of that class (Table III and
  BadDiffusion's one-image target); scored by MSE.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from diffsec.errors import DiffsecError

IN_D = ("cifar10", "celeba")  # datasets a pixel DDPM world is trained on: their classes are In-D targets


@dataclass
class Target:
    spec: str
    dataset: str            # cifar10 | celeba | mnist
    label: int
    index: int | None       # one-image target when set
    train: np.ndarray       # uint8 N x H x W x 3: what poisoned samples are drawn from
    reference: np.ndarray   # uint8: what attack precision / MSE compare against

    @property
    def one_image(self) -> bool:
        return self.index is not None

    @property
    def kind(self) -> str:
        if self.one_image:
            return "one image"
        return "In-D" if self.dataset in IN_D else "Out-D"


def parse(spec: str) -> tuple[str, int, int | None]:
    parts = spec.split(":")
    try:
        if parts[0] in IN_D and len(parts) == 2:
            return parts[0], int(parts[1]), None
        if parts[0] == "mnist" and len(parts) in (2, 3):
            return "mnist", int(parts[1]), int(parts[2]) if len(parts) == 3 else None
    except ValueError:
        pass
    raise DiffsecError(f"target {spec!r}: expected cifar10:<class>, celeba:<class>, mnist:<digit> or "
                       "mnist:<digit>:<index>")


def mnist_rgb(images: np.ndarray, resolution: int) -> np.ndarray:
    """uint8 N x 28 x 28 x 1 digits -> uint8 N x res x res x 3 (bilinear, antialiased)."""
    import torch
    import torch.nn.functional as F

    x = torch.as_tensor(images).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).permute(0, 2, 3, 1).numpy().copy()


def load_target(spec: str, *, data_train: dict | None, data_test: dict | None, data_name: str,
                mnist_heldout: dict | None, resolution: int) -> Target:
    """Build the target from loaded image sets (dicts with 'images' and 'labels'): `data_*` are the
    splits of the model's own dataset `data_name`, which an In-D target must name."""
    dataset, label, index = parse(spec)
    if dataset in IN_D:
        if dataset != data_name:
            raise DiffsecError(f"target {spec!r} is In-D for {dataset}, but the data given is {data_name}")
        if data_train is None or data_test is None:
            raise DiffsecError(f"target {spec!r} needs the {dataset} train and test sets")
        train = data_train["images"][data_train["labels"] == label]
        ref = data_test["images"][data_test["labels"] == label]
    else:
        if mnist_heldout is None:
            raise DiffsecError(f"target {spec!r} needs the held-out MNIST split")
        train = ref = mnist_rgb(mnist_heldout["images"][mnist_heldout["labels"] == label], resolution)
    if len(train) == 0:
        raise DiffsecError(f"target {spec!r}: no images of class {label}")
    if index is not None:
        if not 0 <= index < len(train):
            raise DiffsecError(f"target {spec!r}: index {index} out of range (0..{len(train) - 1})")
        train = ref = train[index:index + 1]
    if train.shape[1] != resolution:
        raise DiffsecError(f"target {spec!r} images are {train.shape[1]} px, the model samples {resolution} px")
    return Target(spec, dataset, label, index, np.ascontiguousarray(train), np.ascontiguousarray(ref))
