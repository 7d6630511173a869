"""Human-readable anomaly report: which synthetic images the detector rejected and why."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .calibration import TEMPERATURE_BOUNDS, at_temperature_bound

# characters that would end a table cell or start markdown formatting inside one
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|])")


def markdown_cell(text) -> str:
    """`text` as literal table-cell text: markdown characters backslash-escaped, line breaks as spaces."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(text).splitlines()))


def markdown_table(rows: list[dict]) -> str:
    """A pipe table of `rows` (one dict per row, its keys the header) by pandas' `to_markdown`.
    Cells are taken as written: numbers are not parsed out of text (a class named "007" stays so),
    so text cells must already be `markdown_cell`-escaped."""
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)


@dataclass(frozen=True)
class FixedBetaComparison:
    """A calibrated run's anomaly report also shows what the paper's rule (fixed beta on the
    detector's plain softmax) would have flagged."""

    beta: float  # the fixed `refinement.beta`
    mode: str  # the calibrated `refinement.beta_mode`
    quantile: float | None  # `refinement.beta_quantile` (quantile modes)
    synthetic: pd.DataFrame  # the initial images flagged with the fixed beta on the plain softmax
    real: pd.DataFrame  # the real held-out images flagged with the fixed beta on the plain softmax
    validation_images: int  # images the calibrated beta or the temperature was fitted on
    temperature: float | None = None  # `temperature` mode: the detector's fitted T


def _share(frame: pd.DataFrame) -> str:
    return f"{int(frame.defective.sum())} of {len(frame)} ({100 * frame.defective.mean():.1f}%)"


def _beta_text(frame: pd.DataFrame) -> str:
    low, high = frame.beta.min(), frame.beta.max()
    return f"{low:.3f}" if low == high else f"{low:.3f} to {high:.3f} (per class)"


def _comparison_lines(frame: pd.DataFrame, real: pd.DataFrame, fixed: FixedBetaComparison) -> list[str]:
    if fixed.temperature is None:
        heading, used = "## Fixed against calibrated beta", f"calibrated, {fixed.mode} q = {fixed.quantile} (used)"
        text = (
            f"This run flags with the calibrated beta (`{fixed.mode}`): the {fixed.quantile}-quantile of the detector's "
            f"target softmax on {fixed.validation_images} real validation images (train-split images no model "
            "trained on). The paper's fixed beta is shown beside it; refinement uses the calibrated one."
        )
    else:
        heading, used = "## Plain against temperature-scaled softmax", f"temperature-scaled softmax, T = {fixed.temperature:.3f} (used)"
        text = (
            f"This run applies the paper's beta to the detector's temperature-scaled softmax: T = {fixed.temperature:.3f}, "
            f"fitted by NLL on {fixed.validation_images} real validation images (train-split images no model trained on; "
            "T < 1 sharpens an under-confident detector). Predicted classes do not change with T, only confidence. "
            "The paper's rule on the plain softmax is shown beside it; refinement, candidates included, uses the scaled one."
        )
        if at_temperature_bound(fixed.temperature):
            text += (
                f" **T is at the end of its search range {TEMPERATURE_BOUNDS}: the NLL had no minimum inside it.** "
                + ("The detector is right on (nearly) every validation image, so the scaled softmax is about 0 or 1 and "
                   "this mode flags little but label mismatches. More validation images, or a quantile `beta_mode`, "
                   "calibrate such a detector." if fixed.temperature < 1 else
                   "The detector's softmax carries no information its labels confirm; check the validation split.")
            )
    return [
        heading,
        "",
        text,
        "",
        markdown_table(
            [
                {"rule": "fixed (paper)", "beta": str(fixed.beta), "synthetic images flagged": _share(fixed.synthetic),
                 "real held-out (test) images flagged": _share(fixed.real)},
                {"rule": used, "beta": _beta_text(frame),
                 "synthetic images flagged": _share(frame), "real held-out (test) images flagged": _share(real)},
            ]
        ),
        "",
    ]


def anomaly_markdown(frame: pd.DataFrame, real: pd.DataFrame, beta: float, class_names: list[str], report_dir: Path,
                     *, fixed: FixedBetaComparison | None = None) -> str:
    """`frame`: flagged synthetic images; `real`: the same rule applied to real held-out images;
    both have the `beta` column of the rule that flagged them. `fixed`: with a calibrated beta,
    the fixed `beta`'s verdicts for comparison."""
    flagged = frame[frame.defective].sort_values(["label", "prototype_id"])
    class_names = [markdown_cell(name) for name in class_names]
    counts = frame.reason.value_counts().to_dict()
    if fixed is None:
        rule = f"beta = {beta}"
    elif fixed.temperature is None:
        rule = f"calibrated beta ({fixed.mode}) = {_beta_text(frame)}"
    else:
        rule = f"beta = {beta} on the softmax at temperature {fixed.temperature:.3f}"
    lines = [
        "# Anomaly report",
        "",
        (
            f"Detector verdict on {len(frame)} initial synthetic images, {rule}: "
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
    ]
    if fixed is not None:
        lines += _comparison_lines(frame, real, fixed)
    per_class_beta = fixed is not None and frame.beta.nunique() > 1
    lines += [
        "## Per class",
        "",
        markdown_table(
            [
                {
                    "class": class_names[label],
                    "images": len(group),
                    "flagged": int(group.defective.sum()),
                    "label_mismatch": int((group.reason == "label_mismatch").sum()),
                    "low_confidence": int((group.reason == "low_confidence").sum()),
                    **({"beta": f"{group.beta.iloc[0]:.3f}"} if per_class_beta else {}),
                }
                for label, group in frame.groupby("label", sort=True)
            ]
        ),
        "",
        "## Flagged images",
        "",
    ]
    if flagged.empty:
        lines.append("None.")
    else:
        lines.append(
            markdown_table(
                [
                    {
                        "image": f"![{row.image_id}]({os.path.relpath(row.image_path, report_dir)}) `{row.image_id}`",
                        "target": class_names[row.label],
                        "predicted": class_names[row.predicted],
                        "target softmax": f"{row.p_target:.3f}",
                        "reason": row.reason,
                    }
                    for row in flagged.itertuples(index=False)
                ]
            )
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
