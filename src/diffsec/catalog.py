"""Every external input the pipeline reads: name, place in the mirror, checksum, canonical URL.

Pure data, kept apart from the fetch logic in `diffsec.sources`: the fetch stage records the
entry of the source it fetches as a param, so declaring a new source (or changing one entry)
reruns only the stages that read that source, not every stage downstream of the sources layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
    # The project's own tiny worlds, as its workflow built them (shared/README.md says how);
    # read from a mirror only. `diffsec install-world` unpacks them (src/diffsec/worlds.py).
    Source("world_t2i-cifar10", "worlds/t2i-cifar10.tar.gz",
           "567d48060fc5a0041f319bc35268c707f6ff0c78b6a082cffe999ed1be283ddb", "",
           description="tiny text-to-image world (StableDiffusionPipeline, 4x16x16 latents), built at 7b38563"),
    Source("world_ddpm-cifar10", "worlds/ddpm-cifar10.tar.gz",
           "adfc668bf14533b1dcc8fd76d03b425eee76207c812889a22be47ea984c18b96", "",
           description="tiny pixel DDPM world on CIFAR-10 (DDPMPipeline), built at 7b38563"),
    Source("world_clip-cifar10", "worlds/clip-cifar10.tar.gz",
           "72a734402fbb62113f7923dd22b200c70e33f63c2140c0f8ccb6b363a131bedd", "",
           description="tiny CLIP-score model on CIFAR-10 captions, built at 7b38563"),
    Source("world_mnist-classifier", "worlds/mnist-classifier.tar.gz",
           "ea7a89950bd524b0c6b2005512565240c388cf385d53cd0ff4ff0b01ae0977aa", "",
           description="MNIST digit classifier (Out-D ASR scorer), built at 7b38563"),
    Source("mist_target", "mist/MIST.png",
           "d9111f2dce73e73f2e932e5ada87f17a288f53240bdf5978b9aaeb2a3093f361",
           "https://github.com/psyker-team/mist/raw/70a2956/MIST.png",
           description="Mist encoder-attack target image"),
]}

# Sources whose canonical location is a folder or a Drive page, not one file: no automatic download.
NOT_DOWNLOADABLE = {"dreambooth10", "celeba_images", "celeba_attributes", "celeba_partition",
                    *(n for n in SOURCES if n.startswith("world_"))}
