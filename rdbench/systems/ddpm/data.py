"""Training images: MNIST, FashionMNIST and CIFAR10 through torchvision, sklearn's digits,
and the user's own images (``imagefolder:DIR``, ``npz:FILE``; :mod:`.user_images`).

Every named dataset becomes one ``uint8`` tensor ``(N, C, 32, 32)`` held in memory
(and on the device): 28x28 images are zero-padded to 32x32 as the authors did.
:meth:`ImageSet.batch` maps a batch to the configured pixel range (``[0, 1]`` as
the authors, ``[-1, 1]`` as Ho et al.).

The torchvision datasets are read from, and downloaded into, a data folder
(``--data-dir``, else ``$RDBENCH_DATA_DIR``, else ``~/.cache/rdbench/data``).
When the files are absent and the download fails (no network),
:class:`DatasetUnavailable` says in one line which files it expects and where.

``digits`` is NOT MNIST: it is scikit-learn's bundled set of 1797 8x8 handwritten
digits (UCI optdigits, 17 grey levels), upsampled bilinearly to 32x32. It needs no
network and is small enough for CPU demos and tests; it is labelled as such
wherever it appears.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from rdbench.systems.records import DatasetRecord, dataset_record

IMAGE_SIZE = 32
DOWNLOAD_TIMEOUT_S = 20.0


class DatasetUnavailable(RuntimeError):
    """The dataset's files are missing and could not be downloaded."""


@dataclass(frozen=True)
class DatasetSpec:
    """What rdbench knows about one dataset."""

    name: str
    channels: int
    description: str
    folder: str  # sub-folder of the data dir that holds the files ("" for digits), or the user's path
    files: tuple[str, ...]  # the files torchvision expects there
    size: tuple[int, int] = (IMAGE_SIZE, IMAGE_SIZE)  # height, width

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, *self.size)


_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        "mnist", 1, "MNIST train split (60000 28x28 digits) via torchvision, zero-padded to 32x32",
        "MNIST/raw", _MNIST_FILES,
    ),
    "fashionmnist": DatasetSpec(
        "fashionmnist", 1,
        "FashionMNIST train split (60000 28x28 clothing images) via torchvision, zero-padded to 32x32",
        "FashionMNIST/raw", _MNIST_FILES,
    ),
    "cifar10": DatasetSpec(
        "cifar10", 3, "CIFAR10 train split (50000 32x32 colour images) via torchvision",
        "cifar-10-batches-py",
        ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
         "test_batch", "batches.meta"),
    ),
    "digits": DatasetSpec(
        "digits", 1,
        "NOT MNIST: scikit-learn's bundled 8x8 digits (1797 images, 17 grey levels) "
        "upsampled bilinearly to 32x32; for CPU demos and offline runs",
        "", (),
    ),
}


def default_data_dir() -> Path:
    """``$RDBENCH_DATA_DIR``, else ``~/.cache/rdbench/data``."""
    env = os.environ.get("RDBENCH_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "rdbench" / "data"


@dataclass
class ImageSet:
    """A whole training set ``(N, C, H, W)``, and how to draw batches from it.

    ``images`` is ``uint8`` (0..255) or float32 in [0, 1] (an ``npz`` file of floats
    keeps its precision); ``full_scale`` is the value that maps to the top of the
    pixel range (255 or 1).
    """

    spec: DatasetSpec
    images: torch.Tensor
    source: str = ""  # where the images were read from (a folder, a file, code:<module>); default: spec.folder

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def full_scale(self) -> float:
        return 255.0 if self.images.dtype == torch.uint8 else 1.0

    def to(self, device: torch.device) -> ImageSet:
        return ImageSet(self.spec, self.images.to(device), self.source)

    def batch(self, index: torch.Tensor, pixel_range: tuple[float, float]) -> torch.Tensor:
        """Images ``index`` as float32 in ``pixel_range`` (0 -> low end, full scale -> high end)."""
        lo, hi = pixel_range
        return self.images[index].to(torch.float32) * ((hi - lo) / self.full_scale) + lo

    def record(self, context: str = "training") -> DatasetRecord:
        """The set as a run input: its name, source, a digest of every pixel and its shape."""
        return dataset_record(self.spec.name, self.source or self.spec.folder, self.images, context,
                              self.spec.description)

    def describe(self) -> dict:
        return {
            "dataset": self.spec.name,
            "description": self.spec.description,
            "images": len(self),
            "shape": list(self.images.shape[1:]),
        }


def load_dataset(name: str, data_dir: str | Path | None = None) -> ImageSet:
    """The training images of ``name`` (downloading them into ``data_dir`` if needed)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    spec = DATASETS[name]
    if name == "digits":
        return ImageSet(spec, _digits(), "code:sklearn.datasets.load_digits")
    root = Path(data_dir) if data_dir else default_data_dir()
    dataset = _torchvision_dataset(spec, root)
    if spec.channels == 1:
        data = torch.as_tensor(dataset.data)  # (N, 28, 28) uint8
        pad = (IMAGE_SIZE - data.shape[-1]) // 2
        images = F.pad(data, (pad, pad, pad, pad))[:, None]
    else:
        images = torch.as_tensor(dataset.data).permute(0, 3, 1, 2).contiguous()  # HWC -> CHW
    return ImageSet(spec, images, str(root / spec.folder))


def _torchvision_dataset(spec: DatasetSpec, root: Path):
    from torchvision import datasets

    cls = {"mnist": datasets.MNIST, "fashionmnist": datasets.FashionMNIST, "cifar10": datasets.CIFAR10}[spec.name]
    try:
        return cls(str(root), train=True, download=False)
    except RuntimeError:
        pass  # not there yet: download it
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        root.mkdir(parents=True, exist_ok=True)
        return cls(str(root), train=True, download=True)
    except Exception as exc:  # noqa: BLE001 - URLError, OSError, RuntimeError: all mean "could not get it"
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise DatasetUnavailable(
            f"dataset {spec.name!r} not found in {root / spec.folder} (expected files: "
            f"{', '.join(spec.files)}) and downloading it failed, probably no network ({reason}); "
            f"put the files there or pass --data-dir / set RDBENCH_DATA_DIR to a folder that has them"
        ) from None
    finally:
        socket.setdefaulttimeout(old_timeout)


def _digits() -> torch.Tensor:
    """sklearn's 8x8 digits (values 0..16), upsampled to 32x32 and quantised to uint8."""
    from sklearn.datasets import load_digits

    small = torch.as_tensor(load_digits().images, dtype=torch.float32)[:, None] / 16.0
    big = F.interpolate(small, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    return (big.clamp(0, 1) * 255).round().to(torch.uint8)
