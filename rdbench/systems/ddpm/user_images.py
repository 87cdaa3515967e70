"""The user's own images for the DDPM system: ``imagefolder:DIR`` and ``npz:FILE``.

**Image folders** are read with torchvision's ``ImageFolder``, which wants the images
in class sub-folders: ``DIR/<class>/<image>`` (one sub-folder is enough, e.g.
``DIR/all/0001.png``; classes are ignored, the model is unconditional). Extensions:
torchvision's ``IMG_EXTENSIONS`` (.png, .jpg, .jpeg, .bmp, .tif, .tiff, .webp, ...).

**Channels** come from the images' PIL modes: ``1``, ``L``, ``LA`` and the 16-bit
``I;16`` modes are grey (1 channel, alpha dropped, 16 bits scaled to 8); every other
mode (``RGB``, ``RGBA``, ``P``, ``CMYK``, ...) is colour (3 channels, RGB). A folder
that mixes grey and colour images becomes RGB throughout (a grey image is copied to
the three channels, which loses nothing; converting colour to grey would). Modes
``I`` (32-bit integers) and ``F`` (floats) have no fixed range and are refused.

**Sizes**: every image must have the same size, or ``image_size`` must be set; then
each image is resized to ``image_size x image_size`` (bilinear with antialiasing; the
aspect ratio is not kept).

**npz files** hold one array, chosen by ``data_key`` (default: ``images`` if the file
has it, else its only array), in one of the layouts ``(N, H, W)`` (grey),
``(N, H, W, C)`` or ``(N, C, H, W)`` with ``C`` = 1 or 3, of ``uint8`` (0..255) or
floats in [0, 1]. ``image_size`` resizes them as above.

Every problem is a :class:`~rdbench.config.ConfigError` with one line naming the
path (and the file inside a folder) and what is allowed. :func:`survey_image_folder`
reads only the image headers (size and mode, no pixels) so that the DDPM system's
``check()`` can refuse a folder before any run exists; :func:`survey_npz` loads and
checks the whole array.
"""

from __future__ import annotations

import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rdbench.config import ConfigError
from rdbench.systems.ddpm.data import DatasetSpec, ImageSet

GREY_MODES = frozenset({"1", "L", "LA", "I;16", "I;16L", "I;16B", "I;16N"})
RANGELESS_MODES = frozenset({"I", "F"})
NPZ_DEFAULT_KEY = "images"


@dataclass(frozen=True)
class ImageSurvey:
    """What a set of images will be once loaded: count, channels and (height, width)."""

    source: str  # "imagefolder:DIR" or "npz:FILE", for messages
    count: int
    channels: int
    size: tuple[int, int]  # height, width after image_size

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, *self.size)


# ----------------------------------------------------------------------------- image folders


def _folder_samples(path: Path) -> list[str]:
    """The image files ``ImageFolder`` finds under ``path`` (class sub-folders), or a one-line error."""
    source = f"imagefolder:{path}"
    if not path.is_dir():
        raise ConfigError(f"{source}: no such folder")
    from torchvision.datasets import ImageFolder
    from torchvision.datasets.folder import IMG_EXTENSIONS

    layout = (f"torchvision's ImageFolder reads {path}/<class>/<image> (one sub-folder is enough, "
              f"e.g. {path}/all/0001.png)")
    loose = [p.name for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS]
    try:
        folder = ImageFolder(str(path), loader=lambda p: p, allow_empty=True)
    except FileNotFoundError:
        found = f"; found {len(loose)} image files directly in it, move them into a sub-folder" if loose else ""
        raise ConfigError(f"{source}: no class sub-folders; {layout}{found}") from None
    if not folder.samples:
        raise ConfigError(
            f"{source}: no images in its sub-folders ({', '.join(folder.classes)}); "
            f"allowed extensions: {', '.join(IMG_EXTENSIONS)}"
        )
    return [p for p, _ in folder.samples]


def _image_header(path: str, root: Path) -> tuple[str, tuple[int, int]]:
    """(PIL mode, (width, height)) of one image file, read from its header."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            mode, size = img.mode, img.size
    except (UnidentifiedImageError, OSError) as exc:
        raise ConfigError(f"imagefolder:{root}: cannot read {Path(path).relative_to(root)} as an image: "
                          f"{' '.join(str(exc).split())}") from None
    if mode in RANGELESS_MODES:
        raise ConfigError(f"imagefolder:{root}: {Path(path).relative_to(root)} has PIL mode {mode} "
                          "(32-bit integer or float pixels, no fixed range); allowed: 8- or 16-bit grey, "
                          "or colour images")
    return mode, size


def survey_image_folder(path: str | Path, image_size: int | None) -> ImageSurvey:
    """Count, channels and size of an image folder from the file headers (no pixel is decoded)."""
    root = Path(path).expanduser()
    files = _folder_samples(root)
    modes: Counter[str] = Counter()
    first_size: dict[tuple[int, int], str] = {}
    for file in files:
        mode, size = _image_header(file, root)
        modes[mode] += 1
        first_size.setdefault(size, file)
        if image_size is None and len(first_size) > 1:
            (size_a, file_a), (size_b, file_b) = list(first_size.items())[:2]
            raise ConfigError(
                f"imagefolder:{root}: images of different sizes, e.g. {Path(file_a).relative_to(root)} is "
                f"{size_a[0]}x{size_a[1]} and {Path(file_b).relative_to(root)} is {size_b[0]}x{size_b[1]} "
                "(width x height); set image_size to resize them all"
            )
    channels = 1 if all(mode in GREY_MODES for mode in modes) else 3
    if image_size is not None:
        size = (image_size, image_size)
    else:
        width, height = next(iter(first_size))
        size = (height, width)
    return ImageSurvey(f"imagefolder:{root}", len(files), channels, size)


def _pixels(path: str, channels: int) -> torch.Tensor:
    """One image as float32 ``(C, H, W)`` in [0, 255]."""
    from PIL import Image

    with Image.open(path) as img:
        if channels == 3:
            array = np.asarray(img.convert("RGB"), dtype=np.float32)
        elif img.mode.startswith("I;16"):
            array = np.asarray(img, dtype=np.float32) * (255.0 / 65535.0)
        else:
            array = np.asarray(img.convert("L"), dtype=np.float32)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def _resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(C, H, W)`` float -> ``(C, *size)``, bilinear with antialiasing (unchanged if already that size)."""
    if tuple(image.shape[-2:]) == size:
        return image
    return F.interpolate(image[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]


def load_image_folder(path: str | Path, image_size: int | None) -> ImageSet:
    """Every image of the folder as ``uint8`` ``(N, C, H, W)`` (channels and size as surveyed)."""
    root = Path(path).expanduser()
    survey = survey_image_folder(root, image_size)
    files = _folder_samples(root)
    images = torch.empty((len(files), *survey.shape), dtype=torch.uint8)
    for i, file in enumerate(files):
        images[i] = _resize(_pixels(file, survey.channels), survey.size).round().clamp(0, 255).to(torch.uint8)
    spec = DatasetSpec(
        survey.source, survey.channels,
        f"{len(files)} images from the folder {root} (torchvision ImageFolder), "
        f"{'RGB' if survey.channels == 3 else 'grey'}, {survey.size[0]}x{survey.size[1]}"
        + (f" (resized to image_size={image_size})" if image_size else ""),
        str(root), (), survey.size,
    )
    return ImageSet(spec, images)


# ----------------------------------------------------------------------------- npz files


def _npz_array(path: Path, key: str | None) -> tuple[str, np.ndarray]:
    source = f"npz:{path}"
    if not path.is_file():
        raise ConfigError(f"{source}: no such file")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ConfigError(f"{source}: not a readable .npz file ({' '.join(str(exc).split())})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ConfigError(f"{source}: not an .npz archive (np.savez / np.savez_compressed writes one)")
    with archive:
        keys = list(archive.files)
        if key is None:
            if NPZ_DEFAULT_KEY in keys:
                key = NPZ_DEFAULT_KEY
            elif len(keys) == 1:
                key = keys[0]
            else:
                raise ConfigError(f"{source}: holds {len(keys)} arrays ({', '.join(keys) or 'none'}); "
                                  f"set data_key to the one with the images")
        if key not in keys:
            raise ConfigError(f"{source}: no array {key!r}; it holds: {', '.join(keys) or 'none'}")
        _check_npz_header(archive, key, f"{source}[{key!r}]")
        try:
            return key, archive[key]
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise ConfigError(f"{source}[{key!r}]: cannot be read ({' '.join(str(exc).split())[:200]})") from None


def _check_npz_header(archive: np.lib.npyio.NpzFile, key: str, source: str) -> None:
    """Read the array's header (dtype, shape) before its data: an object array (pickles) and an
    array larger than the memory this machine has left are refused without loading anything."""
    from rdbench.systems.base import available_memory

    try:
        with archive.zip.open(f"{key}.npy") as member:
            version = np.lib.format.read_magic(member)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(member)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise ConfigError(f"{source}: not a readable array ({' '.join(str(exc).split())[:200]})") from None
    if dtype.hasobject:
        raise ConfigError(f"{source}: an array of Python objects ({dtype}); allowed: uint8 or float images")
    need = int(np.prod(shape, dtype=object)) * dtype.itemsize
    free = available_memory(torch.device("cpu"))
    if free is not None and need > free:
        raise ConfigError(f"{source}: shape {shape} needs {need / 2**30:.1f} GiB, more than the "
                          f"{free / 2**30:.1f} GiB of memory available")


def _nchw(array: np.ndarray, source: str) -> np.ndarray:
    """``(N, H, W)``, ``(N, H, W, C)`` or ``(N, C, H, W)`` with C in {1, 3} -> ``(N, C, H, W)``."""
    allowed = "allowed layouts: (N, H, W), (N, H, W, C) or (N, C, H, W) with C = 1 or 3"
    if array.ndim == 3:
        return array[:, None]
    if array.ndim == 4:
        first, last = array.shape[1] in (1, 3), array.shape[3] in (1, 3)
        if last and not first:
            return array.transpose(0, 3, 1, 2)
        if first and not last:
            return array
        reason = "ambiguous" if first else "no axis of 1 or 3 channels"
        raise ConfigError(f"{source}: shape {array.shape} is {reason}; {allowed}")
    raise ConfigError(f"{source}: shape {array.shape} has {array.ndim} axes; {allowed}")


def _npz_images(path: str | Path, key: str | None, image_size: int | None) -> tuple[str, torch.Tensor, bool]:
    root = Path(path).expanduser()
    key, array = _npz_array(root, key)
    source = f"npz:{root}[{key!r}]"
    array = _nchw(array, source)
    if array.shape[0] == 0:
        raise ConfigError(f"{source}: holds no images (shape {array.shape})")
    if array.dtype == np.uint8:
        images, is_float = torch.from_numpy(np.ascontiguousarray(array)), False
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ConfigError(f"{source}: holds NaN or infinite values")
        low, high = float(array.min()), float(array.max())
        if low < 0 or high > 1:
            raise ConfigError(f"{source}: float images must lie in [0, 1], found {low:g}..{high:g}")
        images, is_float = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)), True
    else:
        raise ConfigError(f"{source}: dtype {array.dtype}; allowed: uint8 (0..255) or float in [0, 1]")
    if image_size is not None and tuple(images.shape[-2:]) != (image_size, image_size):
        scale = 1.0 if is_float else 255.0
        resized = torch.stack([_resize(img.to(torch.float32), (image_size, image_size)) for img in images])
        images = resized.clamp(0, scale) if is_float else resized.round().clamp(0, scale).to(torch.uint8)
    return source, images, is_float


def survey_npz(path: str | Path, key: str | None, image_size: int | None) -> ImageSurvey:
    """Count, channels and size of an npz image array (loaded and checked whole)."""
    source, images, _ = _npz_images(path, key, image_size)
    return ImageSurvey(source, images.shape[0], images.shape[1], tuple(images.shape[2:]))


def load_npz(path: str | Path, key: str | None, image_size: int | None) -> ImageSet:
    """The array as ``(N, C, H, W)``: ``uint8`` kept as is, floats kept as float32 in [0, 1]."""
    source, images, is_float = _npz_images(path, key, image_size)
    n, c, h, w = images.shape
    spec = DatasetSpec(
        source, c,
        f"{n} images from the array file {source}, {'float' if is_float else 'uint8'}, {c}x{h}x{w}"
        + (f" (resized to image_size={image_size})" if image_size else ""),
        str(Path(path).expanduser()), (), (h, w),
    )
    return ImageSet(spec, images)
