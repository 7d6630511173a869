"""What a source holds, found before any job runs (`inspect_source`): the workflow checks it while
it builds the DAG, and rebuilds the manifest when a folder's contents change."""

from __future__ import annotations

from pathlib import Path

from .classes import read_class_table
from .folders import list_image_folder
from .sources import Fingerprint, SourceSummary, source_kind


def inspect_source(source_cfg: dict) -> SourceSummary:
    """What a source holds, found without decoding an image (a directory listing and a stat per
    file: 0.3-0.5 s for 10,000 files), so the workflow can check it before any job runs and rebuild
    the manifest when a folder's contents change. Missing folders, classes and images raise DataError."""
    fingerprint = Fingerprint()
    if source_cfg.get("classes_file"):
        read_class_table(source_cfg["classes_file"])  # its DataError names the key
        fingerprint.add(Path(source_cfg["classes_file"]))
    source = source_kind(source_cfg)
    layout = source.folder_layout(source_cfg)
    if layout is None:
        names = source.classes_without_folders(source_cfg, fingerprint)
        return SourceSummary(names, None, fingerprint.hexdigest())
    listings = list_image_folder(layout.root, layout.splits, layout.class_folders, layout.inferred)
    for listing in listings.values():
        for path in listing.images:
            fingerprint.add(path)
    train_counts = [len(listings["train", folder].images) for folder in layout.class_folders]
    return SourceSummary(layout.class_names, train_counts, fingerprint.hexdigest())
