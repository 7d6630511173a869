"""Human-readable anomaly report: which synthetic images the detector rejected and why."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

# characters that would end a table cell or start markdown formatting inside one
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|])")


def markdown_cell(text) -> str:
    """`text` as literal table-cell text: markdown characters backslash-escaped, line breaks as spaces."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(text).splitlines()))


def anomaly_markdown(frame: pd.DataFrame, real: pd.DataFrame, beta: float, class_names: list[str], report_dir: Path) -> str:
    """`frame`: flagged synthetic images; `real`: the same rule applied to real held-out images."""
    flagged = frame[frame.defective].sort_values(["label", "prototype_id"])
    class_names = [markdown_cell(name) for name in class_names]
    counts = frame.reason.value_counts().to_dict()
    lines = [
        "# Anomaly report",
        "",
        (
            f"Detector verdict on {len(frame)} initial synthetic images, beta = {beta}: "
            f"{len(flagged)} flagged ({100 * len(flagged) / max(len(frame), 1):.1f}%): "
            f"{counts.get('label_mismatch', 0)} label_mismatch, {counts.get('low_confidence', 0)} low_confidence, "
            f"{counts.get('normal', 0)} normal."
        ),
        "",
        (
            "`label_mismatch`: the detector predicts another class. `low_confidence`: it predicts the target "
            "with softmax below beta."
        ),
        "",
        (
            f"For scale, the same rule flags {100 * real.defective.mean():.1f}% of {len(real)} *real* held-out images "
            f"({100 * (real.reason == 'label_mismatch').mean():.1f}% label_mismatch, "
            f"{100 * (real.reason == 'low_confidence').mean():.1f}% low_confidence; median target softmax "
            f"{real.p_target.median():.3f})."
        ),
        "",
        "## Per class",
        "",
        "| class | images | flagged | label_mismatch | low_confidence |",
        "|---|---|---|---|---|",
    ]
    for label, group in frame.groupby("label", sort=True):
        lines.append(
            f"| {class_names[label]} | {len(group)} | {int(group.defective.sum())} | "
            f"{int((group.reason == 'label_mismatch').sum())} | {int((group.reason == 'low_confidence').sum())} |"
        )
    lines += ["", "## Flagged images", ""]
    if flagged.empty:
        lines.append("None.")
    else:
        lines += ["| image | target | predicted | target softmax | reason |", "|---|---|---|---|---|"]
        for row in flagged.itertuples(index=False):
            rel = os.path.relpath(row.image_path, report_dir)
            lines.append(
                f"| ![{row.image_id}]({rel}) `{row.image_id}` | {class_names[row.label]} | "
                f"{class_names[row.predicted]} | {row.p_target:.3f} | {row.reason} |"
            )
    return "\n".join(lines) + "\n"


def contact_sheet(set_frame: pd.DataFrame, out_png, cell: int = 32) -> None:
    """One row per class, the set's images in prototype order: a set to look at in one picture."""
    from torchvision.utils import make_grid

    from .data import load_png_images
    from .io import write_png
    from .train import to_float

    ordered = set_frame.sort_values(["label", "prototype_id"])
    images = to_float(load_png_images(ordered.image_path, cell))
    per_row = int(ordered.groupby("label").size().max())
    write_png(make_grid(images, nrow=per_row, padding=2, pad_value=1.0), out_png)
