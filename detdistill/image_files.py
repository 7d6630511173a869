"""A user's image files: which entries of a class folder are images, and each image decoded to the
8-bit sRGB picture an image viewer shows.

Listing. Every file under a class folder, sub-folders included (as torchvision's `ImageFolder`),
whose suffix is an image format (`IMAGE_SUFFIXES`) is an image of that class. Entries that are not
images to anyone are skipped by name and never decoded (`is_system_entry`): hidden files and
folders (`.DS_Store`, macOS's AppleDouble `._*` companions, `.ipynb_checkpoints`), `Thumbs.db`,
`desktop.ini`, and the folders archivers and NAS boxes add (`__MACOSX`, `@eaDir`). Photos in
formats Pillow does not decode (HEIC, camera raw) are listed as images, so that the check of
every image refuses them by name instead of leaving a class short.

Decoding (`viewer_rgb`), in this order:
1. EXIF orientation applied (phones store photos sideways and say so in a tag).
2. Greys deeper than 8 bits scaled, never clipped: 16-bit (`I;16*`) by 255/65535; 32-bit integer
   (`I`) from the smallest of [0, 255], [0, 65535] and [0, 2^31 - 1] that holds every value,
   float (`F`) from the smallest of [0, 1], [0, 255] and [0, 65535] (else [0, its maximum]), and
   either from the image's own minimum..maximum when it has negative values; rounded to the
   nearest level. NaN is black; infinities are clipped to that range. (Pillow reads 16-bit PGMs
   and PNMs as `I`, scaled to 0..65535 from their maxval.) 16-bit colour PNGs and TIFFs keep
   Pillow's own conversion (the high byte of each channel).
3. An embedded ICC profile other than sRGB converted to sRGB (Display P3 from phones, Adobe RGB
   from cameras, CMYK press profiles); an unreadable profile is ignored, as viewers do.
4. Transparency (alpha, a palette's or a PNG's transparent colour) composited on white
   (`BACKGROUND`).
5. Anything else Pillow opens (CMYK, YCbCr, LAB, HSV, palette, 1-bit) by Pillow's `convert("RGB")`.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import DataError

if TYPE_CHECKING:
    from PIL import Image

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif",
     ".ppm", ".pgm", ".pbm", ".pnm", ".avif", ".jp2"}
)
#: photo formats Pillow does not decode: what to do instead, per suffix
UNDECODED_SUFFIXES = {
    **dict.fromkeys([".heic", ".heif"], "HEIC/HEIF photo, which Pillow does not decode: convert it to JPEG or PNG (e.g. heif-convert)"),
    **dict.fromkeys([".cr2", ".cr3", ".nef", ".arw", ".dng", ".raf", ".orf", ".rw2"],
                    "camera raw file, which Pillow does not decode: export it as JPEG, PNG or 16-bit TIFF"),
}
LISTED_SUFFIXES = IMAGE_SUFFIXES | set(UNDECODED_SUFFIXES)
#: system files by lower-case name, and the folders archivers and NAS boxes write
SYSTEM_FILES = frozenset({"thumbs.db", "ehthumbs.db", "desktop.ini", "icon\r"})
SYSTEM_FOLDERS = frozenset({"__MACOSX", "@eaDir", "$RECYCLE.BIN", "System Volume Information"})
#: what transparent pixels are composited on: a browser page's white
BACKGROUND = (255, 255, 255)


def is_system_entry(name: str) -> bool:
    """Whether a directory entry is not an image to anyone, by its name alone."""
    return name.startswith(".") or name.lower() in SYSTEM_FILES or name in SYSTEM_FOLDERS


def system_kind(name: str) -> str:
    """The group a skipped entry is counted under in the log line."""
    if name.startswith("._"):
        return "AppleDouble ._*"
    if name.lower() in SYSTEM_FILES or name in {".DS_Store"} | SYSTEM_FOLDERS:
        return name.strip()
    return "hidden .*"


# --------------------------------------------------------------------------- listing
@dataclass
class FolderListing:
    """One class folder: its image files, and what was left out or taken in, by path relative to it."""

    images: list[Path] = field(default_factory=list)
    system: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)
    #: the class folder's sub-folders that held images, with how many (theirs included)
    subfolders: dict[str, int] = field(default_factory=dict)


def list_class_folder(class_dir: Path) -> FolderListing:
    """Every image under `class_dir` (sub-folders included, sorted by path; a symbolic link back up
    the tree is followed once), with the system entries skipped by name and the non-image files."""
    listing, visited = FolderListing(), set()

    def walk(folder: Path, prefix: str) -> None:
        real = os.path.realpath(folder)
        if real in visited:
            return
        visited.add(real)
        with os.scandir(folder) as scan:  # DirEntry.is_file / is_dir need no stat call (10k-file folders)
            entries = sorted(scan, key=lambda e: e.name)
        for entry in entries:
            name = prefix + entry.name
            if is_system_entry(entry.name):
                listing.system.append(name)
            elif entry.is_dir():
                before = len(listing.images)
                walk(Path(entry.path), name + "/")
                if len(listing.images) > before and not prefix:
                    listing.subfolders[name] = len(listing.images) - before
            elif entry.is_file() and Path(entry.name).suffix.lower() in LISTED_SUFFIXES:
                listing.images.append(class_dir / name)
            else:
                listing.other.append(name)

    walk(class_dir, "")
    if not listing.images:
        raise DataError(
            f"class folder {class_dir} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}): "
            "add images, or drop the class from `source.classes`"
        )
    return listing


def class_folders_in(split_dir: Path) -> list[str]:
    """The class folders of a split folder, sorted; system folders are not classes."""
    if not split_dir.is_dir():
        raise DataError(
            f"dataset folder {split_dir} does not exist: set the dataset's `source.root` (and `source.splits`) "
            "to the folder holding the split folders"
        )
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not is_system_entry(p.name))


def check_split_classes(root: Path, splits: dict[str, str], class_folders: list[str], inferred: bool) -> None:
    """Every class folder is in every split folder; with the classes taken from the train folder
    (`inferred`), no split has a class folder the train split lacks."""
    for split, folder in splits.items():
        found = class_folders_in(root / folder)
        missing = [c for c in class_folders if c not in found]
        if missing and inferred:
            raise DataError(
                f"class folder(s) {missing} are in {root / splits['train']} but not in {root / folder}: add "
                f"{split} images of them, or list the classes to use in `source.classes`"
            )
        if missing:
            raise DataError(f"{root / folder}: class folders {missing} are missing: add them, or drop them from `source.classes`")
        extra = [c for c in found if c not in class_folders]
        if extra and inferred:
            raise DataError(
                f"class folder(s) {extra} are in {root / folder} but not in {root / splits['train']}: a class "
                f"without train images cannot be learned; add train images of them, remove them from "
                f"{root / folder}, or list the classes to use in `source.classes`"
            )


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _first(items: list[str], shown: int, sep: str = ", ", more: str = " and") -> str:
    """The first `shown` items, then how many more."""
    return sep.join(items[:shown]) + (f"{more} {len(items) - shown} more" if len(items) > shown else "")


def skipped_lines(listings: dict[tuple[str, str], FolderListing], split_folders: dict[str, str], shown: int = 20) -> list[str]:
    """The log lines that account for every entry the listing left out or took from a sub-folder."""
    lines = []
    system = Counter(system_kind(Path(name).name) for lst in listings.values() for name in lst.system)
    if system:
        kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(system.items(), key=lambda kv: (-kv[1], kv[0])))
        lines.append(f"skipped {_count(sum(system.values()), 'system entry', 'system entries')} by name, never decoded: {kinds}")
    other = [f"{split_folders[split]}/{cls}/{name}" for (split, cls), lst in listings.items() for name in lst.other]
    if other:
        lines.append(f"skipped {_count(len(other), 'entry that is not an image file', 'entries that are not image files')} ({', '.join(sorted(IMAGE_SUFFIXES))}): "
                     f"{_first(other, shown)}")
    nested = [(f"{split_folders[split]}/{cls}/{sub}", n) for (split, cls), lst in listings.items() for sub, n in lst.subfolders.items()]
    if nested:
        lines.append(f"took {_count(sum(n for _, n in nested), 'image', 'images')} in {_count(len(nested), 'sub-folder', 'sub-folders')} as part of their class folder "
                     f"(as torchvision's ImageFolder): {_first([f'{p} ({n})' for p, n in nested], shown)}")
    return lines


# --------------------------------------------------------------------------- decoding
def _scale(values: np.ndarray, low: float, high: float) -> np.ndarray:
    scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    return np.round(np.clip(scaled, 0, 255)).astype(np.uint8)


def deep_grey_to_l(img: Image.Image) -> tuple[Image.Image, str]:
    """A grey image deeper than 8 bits (modes I;16*, I, F) as mode L, scaled as the module says,
    with the rule that applied."""
    from PIL import Image

    values = np.asarray(img).astype(np.float64)
    if img.mode.startswith("I;16"):
        return Image.fromarray(_scale(values, 0, 65535), "L"), "16-bit grey scaled from 0..65535"
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    kind = "float" if img.mode == "F" else "32-bit integer"
    if low >= 0:
        ranges = [1.0, 255.0, 65535.0] if img.mode == "F" else [255.0, 65535.0, 2.0**31 - 1]
        low, high = 0.0, next((r for r in ranges if high <= r), high)
        rule = f"{kind} grey scaled from 0..{high:.0f}" if high >= 1 else f"{kind} grey scaled from 0..{high:g}"
    else:
        rule = f"{kind} grey with negative values scaled from its minimum..maximum"
    values = np.nan_to_num(values, nan=low, posinf=high, neginf=low)
    return Image.fromarray(_scale(values, low, high), "L"), rule


_transforms = threading.local()  # littleCMS transforms are not shared between threads


def _srgb_transform(icc: bytes, mode: str):
    from PIL import ImageCms

    cache = _transforms.__dict__.setdefault("cache", {})
    key = (hashlib.sha1(icc).digest(), mode)
    if key not in cache:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        name = ImageCms.getProfileDescription(profile).strip()
        out_mode = "RGBA" if mode == "RGBA" else "RGB"
        is_srgb = name.lower().startswith("srgb") and mode in {"RGB", "RGBA"}
        transform = None if is_srgb else ImageCms.buildTransform(profile, ImageCms.createProfile("sRGB"), mode, out_mode)
        cache[key] = (transform, name)
    return cache[key]


def to_srgb(img: Image.Image) -> tuple[Image.Image, str | None]:
    """The image in sRGB when it embeds another ICC profile, with what was done (None: nothing)."""
    from PIL import ImageCms

    icc = img.info.get("icc_profile")
    if not icc or img.mode not in {"RGB", "RGBA", "CMYK", "L"}:
        return img, None
    try:
        transform, name = _srgb_transform(icc, img.mode)
        if transform is None:
            return img, None
        return ImageCms.applyTransform(img, transform), f"ICC profile '{name}' converted to sRGB"
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return img, "unreadable ICC profile ignored"


def has_transparency(img: Image.Image) -> bool:
    return img.mode in {"RGBA", "LA", "PA", "RGBa", "La"} or "transparency" in img.info


def viewer_rgb(img: Image.Image, notes: list[str] | None = None) -> Image.Image:
    """`img` as the 8-bit RGB picture a viewer shows (the module's steps); each conversion that
    is not a plain `convert("RGB")` is appended to `notes`."""
    from PIL import Image, ImageOps

    notes = [] if notes is None else notes
    orientation = img.getexif().get(0x0112, 1)  # EXIF Orientation
    if orientation not in (1, None):
        img = ImageOps.exif_transpose(img)
        notes.append("EXIF orientation applied")
    if img.mode.startswith("I") or img.mode == "F":
        img, rule = deep_grey_to_l(img)
        notes.append(rule)
    img, converted = to_srgb(img)
    if converted:
        notes.append(converted)
    if has_transparency(img):
        rgba = (img.convert("LA") if img.mode == "La" else img).convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (*BACKGROUND, 255)), rgba)
        notes.append("transparency composited on white")
    return img if img.mode == "RGB" else img.convert("RGB")


def read_rgb(path, notes: list[str] | None = None):
    """One image file as uint8 (3,H,W) RGB, decoded as `viewer_rgb`; DataError naming the file."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms.v2 import functional as TF

    try:
        with Image.open(path) as img:  # pixels read while the file is open: RGB is returned as is
            return TF.pil_to_tensor(viewer_rgb(img, notes))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"cannot read image {path}: {exc}. Delete or replace the file and re-run") from exc


def image_error(path, notes: list[str] | None = None) -> str | None:
    """None if `path` decodes completely as `viewer_rgb` does, else the reason. `Image.verify`
    reads headers only and passes a truncated JPEG (the usual broken download), so the pixels are
    decoded; `draft` lets JPEGs decode at reduced scale, which bounds memory for large photos."""
    from PIL import Image

    path = Path(path)
    if path.suffix.lower() in UNDECODED_SUFFIXES:
        return UNDECODED_SUFFIXES[path.suffix.lower()]
    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes)"
        with Image.open(path) as img:
            img.draft("RGB", (1, 1))
            img.load()
            viewer_rgb(img, notes)
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError) as exc:
        # what PIL's decoders raise for broken files (UnidentifiedImageError is an OSError)
        return f"{type(exc).__name__}: {exc}"
    return None


def check_images_decode(paths, threads: int = 1, listing_path=None) -> Counter:
    """Decode every image file once: the count of each conversion `viewer_rgb` made, or DataError
    giving the count, the first few and `listing_path`, where every unreadable file is listed with
    its reason (written either way, so a run that reads them all leaves an empty list)."""
    from concurrent.futures import ThreadPoolExecutor

    from . import io as artifacts

    paths = list(paths)

    def check(path):
        notes: list[str] = []
        return image_error(path, notes), notes

    with ThreadPoolExecutor(max(1, threads)) as pool:  # PIL decodes outside the GIL
        results = list(pool.map(check, paths))
    errors = [(p, e) for p, (e, _) in zip(paths, results) if e]
    if listing_path is not None:
        rows = "".join(f"{p}\t{' '.join(e.split())}\n" for p, e in errors)
        artifacts.write_text(f"file\treason\n{rows}", listing_path)
    if errors:
        shown = _first([f"{p} ({e})" for p, e in errors], 3, "; ", "; and")
        where = f", all listed with the reason in {listing_path}" if listing_path is not None else ""
        raise DataError(f"{len(errors)} of {len(paths)} image files cannot be read{where}: {shown}. Delete or replace them and re-run")
    return Counter(note for _, notes in results for note in notes)
