"""Pictures of the refinement for the report, drawn with Pillow:

- `flagged_figure`: the initial set (d4m) with every flagged image framed by its reason, beside the
  refined set (conf_sim) with every replacement framed (above it beyond 20 images a class): what
  the detector rejected and what took its place, one class per row.
- `candidates_figure`: per flagged image (the paper's Fig. 4): the image, then its candidates from
  the same prototype with the detector's target softmax under each; conf_sim's pool (predicted as
  the target with p > beta, top-k) and its choice are framed, and the choices of the conf and sim
  ablations are lettered.
"""

from __future__ import annotations

import math

import pandas as pd
from PIL import Image, ImageDraw

CELL = 64  # pixels per image in the pictures (small sets are upscaled to be seen)
BORDER = 4
TEXT = 14  # height of a caption line under a cell
COLOURS = {
    "wrong_class": (220, 30, 30),  # the detector predicts another class
    "low_confidence": (245, 150, 0),  # the target's softmax is below beta
    "replaced": (30, 170, 60),  # conf_sim's choice, or an image it put in the set
    "pool": (40, 110, 230),  # in conf_sim's pool but not chosen
    "plain": (200, 200, 200),
}
#: the widest class row (images) drawn with the initial and refined sets side by side in the flagged figure
SIDE_BY_SIDE_IPC = 20
#: flagged images per class shown in the candidate panel (a picture, not the whole table)
CANDIDATE_ROWS_PER_CLASS = 3
#: characters of a class name shown under a cell (a caption, not a label column)
NAME_CHARS = 10
MARGIN = 2  # pixels between a text and the edges of its canvas
CAPTION_GAP = 4  # pixels at least between one cell's caption and the next cell's

_MEASURE = ImageDraw.Draw(Image.new("RGB", (1, 1)))


def text_width(text: str) -> int:
    """Pixels `text` reaches right of where it is drawn, in the default font that the figures use."""
    return math.ceil(_MEASURE.textbbox((0, 0), text)[2])


def short_name(name: str) -> str:
    """A class name as the figures caption it: its first NAME_CHARS characters."""
    return str(name)[:NAME_CHARS]


def wrapped(text: str, width: int) -> list[str]:
    """`text` broken at spaces into lines at most `width` pixels wide (a word wider than that is a
    line of its own)."""
    lines: list[str] = []
    for word in text.split():
        if lines and text_width(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def _text_strip(text: str, width: int) -> Image.Image:
    """`text` on white, wrapped to `width`; wider than `width` only where one word is."""
    lines = wrapped(text, width - 2 * MARGIN)
    canvas = Image.new("RGB", (max(width, *(text_width(line) + 2 * MARGIN for line in lines)), len(lines) * TEXT + 4),
                       (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((MARGIN, 2 + i * TEXT), line, fill=(0, 0, 0))
    return canvas


def _cell(path: str, colour: tuple[int, int, int] | None) -> Image.Image:
    """The image at `path`, resized to CELL, framed in `colour` (white frame when None)."""
    image = upscaled(Image.open(path).convert("RGB"))
    framed = Image.new("RGB", (CELL + 2 * BORDER, CELL + 2 * BORDER), colour or (255, 255, 255))
    framed.paste(image, (BORDER, BORDER))
    return framed


def upscaled(image: Image.Image) -> Image.Image:
    """`image` at CELL x CELL: small images upscaled keep their pixels visible; large ones are
    downscaled smoothly."""
    return image.resize((CELL, CELL), Image.Resampling.NEAREST if image.width < CELL else Image.Resampling.LANCZOS)


def _reason_colour(reason: str) -> tuple[int, int, int] | None:
    """The frame of a flagged image by its anomaly-table reason (detdistill.stages.anomalies)."""
    return {"label_mismatch": COLOURS["wrong_class"], "low_confidence": COLOURS["low_confidence"]}.get(reason)


def _grid(rows: list[list[Image.Image]], title: str, gap: int = 2) -> Image.Image:
    """`rows` of cells under `title`, one line: the grid widens to its title rather than wrap it, so
    that grids side by side keep their rows level."""
    side = CELL + 2 * BORDER
    width = max(max(len(r) for r in rows) * (side + gap) + gap, gap + text_width(title) + MARGIN)
    canvas = Image.new("RGB", (width, TEXT + len(rows) * (side + gap) + gap), (255, 255, 255))
    ImageDraw.Draw(canvas).text((gap, 1), title, fill=(0, 0, 0))
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            canvas.paste(cell, (gap + c * (side + gap), TEXT + gap + r * (side + gap)))
    return canvas


def _join(images: list[Image.Image], *, across: bool, gap: int = 0) -> Image.Image:
    """`images` pasted on white, left to right (`across`) or top to bottom, `gap` pixels apart."""
    along = [i.width if across else i.height for i in images]
    thick = max(i.height if across else i.width for i in images)
    length = sum(along) + gap * (len(images) - 1)
    canvas = Image.new("RGB", (length, thick) if across else (thick, length), (255, 255, 255))
    offset = 0
    for image, size in zip(images, along, strict=True):
        canvas.paste(image, (offset, 0) if across else (0, offset))
        offset += size + gap
    return canvas


def _legend(entries: list[tuple[str, str]], width: int) -> Image.Image:
    """A swatch of each entry's colour and its text, left to right, on as many lines as `width`
    needs; wider than `width` only where one entry is."""
    placed, x, line = [], MARGIN, 0  # (x, line) of each entry
    for _, text in entries:
        extent = 14 + text_width(text)
        if x > MARGIN and x + extent > width - MARGIN:
            x, line = MARGIN, line + 1
        placed.append((x, line))
        x += extent + 14
    right = max(x + 14 + text_width(text) for (x, _), (_, text) in zip(placed, entries, strict=True))
    canvas = Image.new("RGB", (max(width, right + MARGIN), (line + 1) * TEXT + 4), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for (key, text), (x, line) in zip(entries, placed, strict=True):
        y = line * TEXT
        draw.rectangle([x, y + 3, x + 10, y + 13], fill=COLOURS[key])
        draw.text((x + 14, y + 2), text, fill=(0, 0, 0))
    return canvas


def flagged_figure(anomalies: pd.DataFrame, refined: pd.DataFrame) -> Image.Image:
    """The initial set with its flagged images framed (red: another class predicted; orange: the
    target's softmax below beta) beside (beyond SIDE_BY_SIDE_IPC images a class: above) the refined
    set with its replacements framed green."""
    initial_rows, refined_rows = [], []
    ordered = anomalies.sort_values(["label", "prototype_id"])
    by_image = refined.set_index("replaced_image_id")
    for _, group in ordered.groupby("label", sort=True):
        initial_rows.append([_cell(r.image_path, _reason_colour(r.reason) if r.defective else None) for r in group.itertuples()])
        cells = []
        for r in group.itertuples():
            if r.defective and r.image_id in by_image.index:
                cells.append(_cell(by_image.at[r.image_id, "image_path"], COLOURS["replaced"]))
            else:
                cells.append(_cell(r.image_path, None))
        refined_rows.append(cells)
    flagged = int(anomalies.defective.sum())
    # Side by side up to SIDE_BY_SIDE_IPC images a class; above, one over the other (IPC 50 side by
    # side made a 7,420 x 774 px strip that no viewer shows legibly).
    widest = max(len(row) for row in initial_rows)
    pictures = _join([
        _grid(initial_rows, f"initial set (d4m): {flagged} of {len(anomalies)} flagged"),
        _grid(refined_rows, "refined set (conf_sim): replacements framed"),
    ], across=widest <= SIDE_BY_SIDE_IPC, gap=16)
    legend = _legend([("wrong_class", "flagged: another class predicted"), ("low_confidence", "flagged: target softmax < beta"),
                      ("replaced", "conf_sim's replacement")], pictures.width)
    return _join([pictures, legend], across=False)


def candidate_caption(p_target: float, predicted: int, label: int, class_names) -> str:
    """The line under a candidate: its target softmax, then `>` and the predicted class's name when
    that is another class than `label`."""
    return f"{p_target:.2f}" + ("" if int(predicted) == int(label) else f" >{short_name(class_names[int(predicted)])}")


def _column_width(least: int, captions: list[str]) -> int:
    """The pixels a column of cells takes: `least`, or more where a caption (drawn 1 px in) needs it
    to keep CAPTION_GAP from the next column."""
    return max([least, *(text_width(text) + 1 + CAPTION_GAP for text in captions)])


def candidates_figure(anomalies: pd.DataFrame, candidates: pd.DataFrame, sets: dict[str, pd.DataFrame], top_k: int,
                      class_names: dict[int, str]) -> Image.Image | None:
    """Per flagged image (up to CANDIDATE_ROWS_PER_CLASS per class): the flagged image, then its
    candidates in index order, each captioned with its target softmax (and the predicted class's
    name when another); framed green: conf_sim's choice; blue: the rest of conf_sim's pool; letters
    C and S: the conf and sim ablations' choices. Columns are as wide as their widest caption, the
    title and legend wrap to the body. None when nothing was flagged."""
    from .refine import confidence_pool

    flagged = anomalies[anomalies.defective].sort_values(["label", "prototype_id"])
    flagged = flagged.groupby("label", sort=True).head(CANDIDATE_ROWS_PER_CLASS)
    if flagged.empty:
        return None
    chosen = {method: frame.dropna(subset=["replaced_image_id"]).set_index("replaced_image_id").candidate_index
              for method, frame in sets.items()}
    side = CELL + 2 * BORDER
    rows = []  # per flagged image: (its captions, [(candidate image, frame colour, captions)])
    for item in flagged.itertuples():
        cands = candidates[candidates.source_image_id == item.image_id].sort_values("candidate_index")
        pool, fallback = confidence_pool(cands.p_target.to_numpy(), cands.predicted.to_numpy(), int(item.label),
                                         beta=float(item.beta), top_k=top_k)
        pool_index = set(cands.candidate_index.to_numpy()[pool].tolist())
        # "fallback": no candidate passed beta, the pool is the single argmax-p candidate
        flagged_captions = ["fallback" if fallback else short_name(class_names[int(item.label)]), f"p={item.p_target:.2f}"]
        cells = []
        for cand in cands.itertuples():
            index = int(cand.candidate_index)
            is_choice = chosen.get("conf_sim", pd.Series(dtype=int)).get(item.image_id) == index
            colour = COLOURS["replaced"] if is_choice else COLOURS["pool"] if index in pool_index else COLOURS["plain"]
            letters = "".join(letter for method, letter in (("conf", "C"), ("sim", "S"))
                              if chosen.get(method, pd.Series(dtype=int)).get(item.image_id) == index)
            cells.append((cand.image_path, colour, [candidate_caption(cand.p_target, cand.predicted, item.label, class_names),
                                                    letters]))
        rows.append((item, flagged_captions, cells))
    # one width for each kind of column in the whole figure, so that the candidates stay in columns
    first = _column_width(side + 10, [text for _, captions, _ in rows for text in captions])
    pitch = _column_width(side + 2, [text for *_, cells in rows for *_, captions in cells for text in captions])
    images = []
    for item, flagged_captions, cells in rows:
        row = Image.new("RGB", (first + len(cells) * pitch, side + 2 * TEXT), (255, 255, 255))
        draw = ImageDraw.Draw(row)
        row.paste(_cell(item.image_path, _reason_colour(item.reason)), (0, 0))
        columns = [(0, flagged_captions)]
        for c, (path, colour, captions) in enumerate(cells):
            row.paste(_cell(path, colour), (first + c * pitch, 0))
            columns.append((first + c * pitch, captions))
        for x, captions in columns:
            for line, text in enumerate(captions):
                if text:
                    draw.text((x + 1, side + line * (TEXT - 2)), text, fill=(0, 0, 0))
        images.append(row)
    body = _join(images, across=False)
    legend = _legend([("replaced", "conf_sim's choice"), ("pool", f"conf_sim's pool (target, p > beta, top-{top_k})"),
                      ("plain", "other candidates; C / S: conf / sim choice")], body.width)
    title = _text_strip("flagged image (left, its softmax) and its candidates from the same prototype "
                        "(target softmax, > predicted class when another)", max(body.width, legend.width))
    return _join([title, body, legend], across=False)


def placeholder(text: str) -> Image.Image:
    """A small picture that says why there is nothing to draw (a report entry must be a file)."""
    canvas = Image.new("RGB", (max(200, text_width(text) + 8), 30), (255, 255, 255))
    ImageDraw.Draw(canvas).text((4, 8), text, fill=(0, 0, 0))
    return canvas
