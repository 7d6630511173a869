"""The data source kinds (`source.kind`), one file each, registered in `SOURCE_KINDS` when this
package is imported: a new kind is one `DataSource` subclass in its own file, decorated with
`@SOURCE_KINDS.register`, imported here, and named in the `source.kind` enum of config/schema.yaml."""

from __future__ import annotations

from . import cifar10, digits, imagefolder, imagenette2  # noqa: F401  (each registers its kind)
from .base import (
    COMMON_CONFIG_KEYS,
    SOURCE_KINDS,
    DataSource,
    Fingerprint,
    FolderLayout,
    SourceSummary,
    source_kind,
)

#: the kinds this package ships, in their registration order
SOURCE_KIND_NAMES = SOURCE_KINDS.names()

__all__ = ["COMMON_CONFIG_KEYS", "SOURCE_KINDS", "SOURCE_KIND_NAMES", "DataSource", "Fingerprint", "FolderLayout",
           "SourceSummary", "source_kind"]
