"""Datasets: a manifest table of every image (`tables`), built from a dataset's `source` settings
(`build`) by its source kind (`sources`, one file per `source.kind`), with label noise
(`label_noise`) and a validation split (`validation`) put on; the loaders that turn manifest rows
into tensors (`loading`); and what a source holds before any job runs (`inspection`).

Manifest columns: image_id (str, unique), label (int), class_name (str), split ('train'|'val'|'test'),
source (file path, or the row index inside a bundled array dataset). 'val' rows exist only with
`source.validation_fraction` > 0: real images carved from the train split that nothing trains on.

The names below are the package's interface (`from detdistill import data; data.load_images(...)`);
torch is imported only where images are loaded, as Snakemake imports this package for its DAG.
"""

from __future__ import annotations

from ..errors import DataError
from .build import build_manifest, check_source_images
from .classes import check_class_sizes, read_class_table, select_classes, subset_classes, table_classes
from .folders import DEFAULT_SPLITS, imagefolder_manifest, list_image_folder
from .inspection import inspect_source
from .label_noise import apply_label_noise, noise_summary
from .loading import (
    decode_image_files,
    image_chunks,
    load_image_files,
    load_images,
    load_png_images,
    load_set_images,
)
from .sources import SOURCE_KINDS, DataSource, SourceSummary, source_kind
from .sources.digits import digits_manifest, load_digits_images
from .tables import (
    MANIFEST_COLUMNS,
    class_names,
    label_tensor,
    latent_matrix,
    read_image_dirs,
    row_chunks,
    train_split,
)
from .validation import carve_validation, validation_count

__all__ = [
    "DEFAULT_SPLITS",
    "MANIFEST_COLUMNS",
    "SOURCE_KINDS",
    "DataError",
    "DataSource",
    "SourceSummary",
    "apply_label_noise",
    "build_manifest",
    "carve_validation",
    "check_class_sizes",
    "check_source_images",
    "class_names",
    "decode_image_files",
    "digits_manifest",
    "image_chunks",
    "imagefolder_manifest",
    "inspect_source",
    "label_tensor",
    "latent_matrix",
    "list_image_folder",
    "load_digits_images",
    "load_image_files",
    "load_images",
    "load_png_images",
    "load_set_images",
    "noise_summary",
    "read_class_table",
    "read_image_dirs",
    "row_chunks",
    "select_classes",
    "source_kind",
    "subset_classes",
    "table_classes",
    "train_split",
    "validation_count",
]
