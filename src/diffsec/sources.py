"""Checksummed external inputs.

Every file the pipeline reads from outside is declared here with its sha256 and canonical
URL. A source is read from the mirror directory when one is configured (or found), else
downloaded; the bytes must match the checksum before anything is written.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from diffsec.errors import DiffsecError


@dataclass(frozen=True)
class Source:
    name: str
    mirror_path: str  # relative to the mirror root
    sha256: str
    url: str  # canonical upstream location (download fallback)
    # The upstream file is sometimes a different packaging of the same data (CIFAR-10 is
    # mirrored as JPEGs, upstream ships the binary version): then it has its own checksum.
    url_sha256: str | None = None
    description: str = ""
    # Only for sources whose publisher gives no sha256 (CelebA: the md5s its authors and
    # torchvision publish); then `sha256` is empty and the md5 is checked instead.
    md5: str | None = None

    def digest(self) -> tuple[str, str]:
        """(algorithm, expected hex digest) of the file's bytes."""
        return ("sha256", self.sha256) if self.sha256 else ("md5", self.md5 or "")

    @property
    def filename(self) -> str:
        return Path(self.mirror_path).name


SOURCES: dict[str, Source] = {s.name: s for s in [
    Source("cifar10", "cifar10/cifar10-jpeg.tar.gz",
           "b379c20532d0d7113e4257fb4fe37c05481e5a503319cd10c2de3889728c9e18",
           "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
           url_sha256="c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
           description="CIFAR-10 train+test; the mirror holds a JPEG (q~75) re-encoding"),
    Source("mnist_test_images", "mnist/t10k-images-idx3-ubyte.gz",
           "167310007f03058885c7e95e6c0b19c20de5c7fd3031f4cbdadc9014a523d80b",
           "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz",
           description="MNIST test images (IDX)"),
    Source("mnist_test_labels", "mnist/t10k-labels-idx1-ubyte.gz",
           "fc607395669ec21321ea83e4b82c0544b7e8e63ff5b34337c06bc0a17cc0da3c",
           "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz",
           description="MNIST test labels (IDX)"),
    Source("dreambooth10", "dreambooth/dreambooth10.tar.gz",
           "dcb52a2f2eecb21ae58a3fae6d12379466aa504d9e9b8c6898eaa5a53c4d15cb",
           "https://github.com/google/dreambooth/tree/main/dataset",
           description="10 DreamBooth subjects (a repack of the repository's dataset/ folder)"),
    Source("resnet20", "weights/resnet20-12fca82f.th",
           "12fca82f0bebc4135bf1f32f6e3710e61d5108578464b84fd6d7f5c1b04036c8",
           "https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models/resnet20-12fca82f.th",
           description="CIFAR-10 ResNet-20 (akamaster), 91.7% top-1"),
    Source("resnet56", "weights/resnet56-4bfd9763.th",
           "4bfd97631478d6b638d2764fd2baff3edb1d7d82252d54439343b6596b9b5367",
           "https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models/resnet56-4bfd9763.th",
           description="CIFAR-10 ResNet-56 (akamaster), 93.6% top-1"),
    # CelebA (InvisibleDiffusion's second benchmark, `paper` profile): not in the shared mirror,
    # and Google Drive serves it behind a confirmation page, so it is read from a mirror only.
    Source("celeba_images", "celeba/img_align_celeba.zip", "",
           "https://drive.google.com/file/d/0B7EVK8r0v71pZjFTYXZWM3FlRnM",
           md5="00d2c5bc6d35e252742224ab0c1e8fcb", description="CelebA aligned and cropped faces (zip)"),
    Source("celeba_attributes", "celeba/list_attr_celeba.txt", "",
           "https://drive.google.com/file/d/0B7EVK8r0v71pblRyaVFSWGxPY0U",
           md5="75e246fa4810816ffd6ee81facbd244c", description="CelebA 40 binary attributes per image"),
    Source("celeba_partition", "celeba/list_eval_partition.txt", "",
           "https://drive.google.com/file/d/0B7EVK8r0v71pY0NSMzRuSXJEVkk",
           md5="d32c9cbf5e040fd4025c592c306e6668", description="CelebA train/val/test partition"),
    Source("mist_target", "mist/MIST.png",
           "d9111f2dce73e73f2e932e5ada87f17a288f53240bdf5978b9aaeb2a3093f361",
           "https://github.com/psyker-team/mist/raw/70a2956/MIST.png",
           description="Mist encoder-attack target image"),
]}

# Sources whose canonical location is a folder or a Drive page, not one file: no automatic download.
_NOT_DOWNLOADABLE = {"dreambooth10", "celeba_images", "celeba_attributes", "celeba_partition"}


def default_mirror(repo_root: str | os.PathLike) -> Path | None:
    """`../shared/mirror` beside the repository, when it exists."""
    p = Path(repo_root).resolve().parent / "shared" / "mirror"
    return p if p.is_dir() else None


def resolve_mirror(mirror: str | None, repo_root: str | os.PathLike = ".") -> Path | None:
    """Config value -> mirror dir: 'auto' finds the default, '' or None means download only."""
    if mirror in (None, "", "none"):
        return None
    if mirror == "auto":
        return default_mirror(repo_root)
    p = Path(mirror)
    if not p.is_dir():
        raise DiffsecError(f"mirror directory {mirror!r} does not exist")
    return p


def _digest(path: Path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def fetch(name: str, dest_dir: str | os.PathLike, mirror: Path | None,
          timeout: float = 30.0) -> tuple[Path, str]:
    """Copy (or download) source `name` into dest_dir after verifying its checksum.

    Returns (path, origin) where origin is 'mirror' or the URL. Raises DiffsecError with a
    single-line message and leaves nothing in dest_dir on any failure.
    """
    if name not in SOURCES:
        raise DiffsecError(f"unknown source {name!r}; known: {', '.join(sorted(SOURCES))}")
    src = SOURCES[name]
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{src.filename}.", dir=dest_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if mirror is not None:
            path = mirror / src.mirror_path
            if not path.is_file():
                raise DiffsecError(f"source {name}: {path} is missing from the mirror")
            shutil.copyfile(path, tmp)
            (algorithm, expected), origin = src.digest(), "mirror"
        else:
            if name in _NOT_DOWNLOADABLE:
                raise DiffsecError(f"source {name}: no mirror configured and {src.url} cannot be "
                                   "downloaded automatically; set `mirror:` to a directory holding "
                                   f"{src.mirror_path}")
            try:
                with urllib.request.urlopen(src.url, timeout=timeout) as r, open(tmp, "wb") as f:
                    shutil.copyfileobj(r, f)
            except (urllib.error.URLError, OSError, TimeoutError) as e:
                reason = getattr(e, "reason", e)
                raise DiffsecError(f"source {name}: no mirror configured and download of {src.url} "
                                   f"failed ({reason})") from None
            (algorithm, expected), origin = src.digest(), src.url
            if src.url_sha256:
                algorithm, expected = "sha256", src.url_sha256
        got = _digest(tmp, algorithm)
        if got != expected:
            raise DiffsecError(f"source {name}: {algorithm} mismatch for {origin if origin != 'mirror' else path} "
                               f"(expected {expected[:16]}..., got {got[:16]}...)")
        final = dest_dir / (src.filename if origin == "mirror" else Path(src.url).name)
        os.replace(tmp, final)
        return final, origin
    finally:
        if tmp.exists():
            tmp.unlink()
