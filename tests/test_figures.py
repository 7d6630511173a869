"""The report's refinement pictures (detdistill.figures) on hand-made images and tables: each cell's
frame colour says what the tables say (flag reason, replacement, conf_sim's pool and choice)."""

import itertools

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw

from detdistill import figures
from detdistill.figures import BORDER, CELL, COLOURS, MARGIN, TEXT


def _png(folder, name, shade):
    path = folder / f"{name}.png"
    Image.new("RGB", (8, 8), (shade, shade, shade)).save(path)
    return str(path)


def _frame_colour(picture: Image.Image, x: int, y: int) -> tuple:
    """The colour of the frame of the cell whose top-left corner is (x, y)."""
    return tuple(int(v) for v in np.asarray(picture)[y + 1, x + CELL // 2])


def _inputs(tmp_path):
    # class 0: three initial images; p001 flagged (another class), p002 flagged (low softmax)
    anomalies = pd.DataFrame({
        "image_id": ["c0-p000", "c0-p001", "c0-p002"], "label": 0, "class_name": "zero", "prototype_id": [0, 1, 2],
        "image_path": [_png(tmp_path, f"i{i}", 50 + i) for i in range(3)], "predicted": [0, 3, 0],
        "p_target": [0.99, 0.2, 0.6], "reason": ["normal", "label_mismatch", "low_confidence"],
        "defective": [False, True, True], "beta": 0.9,
    })
    # four candidates each; for c0-p001: p = [0.95, 0.99, 0.5, 0.97] with candidate 2 of another class
    rows = []
    for source, ps, preds in [("c0-p001", [0.95, 0.99, 0.5, 0.97], [0, 0, 1, 0]), ("c0-p002", [0.3, 0.4, 0.2, 0.1], [0, 0, 0, 0])]:
        for k, (p, pred) in enumerate(zip(ps, preds)):
            rows.append({"source_image_id": source, "candidate_index": k, "p_target": p, "predicted": pred,
                         "image_path": _png(tmp_path, f"{source}-{k}", 100 + k)})
    candidates = pd.DataFrame(rows)

    def refined(choice_p001, choice_p002):
        return pd.DataFrame({
            "image_id": ["c0-p000", f"c0-p001/cand{choice_p001:02d}", f"c0-p002/cand{choice_p002:02d}"],
            "replaced_image_id": [None, "c0-p001", "c0-p002"], "candidate_index": [-1, choice_p001, choice_p002],
            "image_path": [anomalies.image_path[0], *[candidates.image_path[i] for i in (choice_p001, 4 + choice_p002)]],
        })

    # conf_sim picks candidate 3 of p001 (pool: 1 and 3, top-2 of those above beta), 1 of p002 (fallback)
    sets = {"conf": refined(1, 1), "sim": refined(2, 0), "conf_sim": refined(3, 1)}
    return anomalies, candidates, sets


def test_flagged_figure_frames_flags_and_replacements(tmp_path):
    anomalies, _, sets = _inputs(tmp_path)
    picture = figures.flagged_figure(anomalies, sets["conf_sim"])
    side, gap = CELL + 2 * BORDER, 2
    y = TEXT + gap
    left = [_frame_colour(picture, gap + c * (side + gap), y) for c in range(3)]
    assert left == [(255, 255, 255), COLOURS["wrong_class"], COLOURS["low_confidence"]]
    right_x = 3 * (side + gap) + gap + 16  # the second grid starts after the first and a 16 px gap
    right = [_frame_colour(picture, right_x + gap + c * (side + gap), y) for c in range(3)]
    assert right == [(255, 255, 255), COLOURS["replaced"], COLOURS["replaced"]]
    # the replacement drawn is conf_sim's candidate 3 (shade 103), not the flagged image
    assert tuple(np.asarray(picture)[y + side // 2, right_x + gap + (side + gap) + side // 2]) == (103, 103, 103)


def test_flagged_figure_stacks_the_sets_above_side_by_side_ipc(tmp_path):
    """At IPC 21 the refined set is drawn below the initial one (no 40-image-wide strip), still framed."""
    ipc = figures.SIDE_BY_SIDE_IPC + 1
    anomalies = pd.DataFrame({
        "image_id": [f"c0-p{i:03d}" for i in range(ipc)], "label": 0, "prototype_id": range(ipc),
        "image_path": [_png(tmp_path, f"i{i}", 50) for i in range(ipc)],
        "reason": ["low_confidence"] + ["normal"] * (ipc - 1), "defective": [True] + [False] * (ipc - 1),
    })
    refined = pd.DataFrame({"image_id": ["c0-p000/cand00"], "replaced_image_id": ["c0-p000"],
                            "image_path": [_png(tmp_path, "replacement", 200)]})
    picture = figures.flagged_figure(anomalies, refined)
    side, gap = CELL + 2 * BORDER, 2
    grid_width, grid_height = ipc * (side + gap) + gap, TEXT + gap + side + gap
    assert picture.width < 2 * grid_width and picture.height > 2 * grid_height
    assert _frame_colour(picture, gap, TEXT + gap) == COLOURS["low_confidence"]
    second_y = grid_height + 16 + TEXT + gap  # the refined grid starts below the first and a 16 px gap
    assert _frame_colour(picture, gap, second_y) == COLOURS["replaced"]
    assert tuple(np.asarray(picture)[second_y + side // 2, gap + side // 2]) == (200, 200, 200)


def _body_top(picture: Image.Image) -> int:
    """The first pixel row of the first flagged image's frame: the title (wrapped to the picture's
    width, so of any height) leaves column 0 white."""
    return int(np.flatnonzero((np.asarray(picture)[:, 0] != 255).any(axis=1))[0])


def test_candidate_panel_frames_pool_and_choice(tmp_path):
    anomalies, candidates, sets = _inputs(tmp_path)
    picture = figures.candidates_figure(anomalies, candidates, sets, top_k=2, class_names={0: "zero", 1: "one"})
    side = CELL + 2 * BORDER
    row_height = side + 2 * TEXT
    title = _body_top(picture)
    assert title >= TEXT + 4

    def frames(row):
        return [_frame_colour(picture, 8 + (k + 1) * (side + 2), title + row * row_height) for k in range(4)]

    # p001: pool {1, 3} (3 chosen); 0 passes beta but is third by p; 2 is another class
    assert frames(0) == [COLOURS["plain"], COLOURS["pool"], COLOURS["plain"], COLOURS["replaced"]]
    # p002: nothing passes beta: the pool is the argmax-p candidate 1, also the choice
    assert frames(1) == [COLOURS["plain"], COLOURS["replaced"], COLOURS["plain"], COLOURS["plain"]]
    assert _frame_colour(picture, 0, title) == COLOURS["wrong_class"]
    assert _frame_colour(picture, 0, title + row_height) == COLOURS["low_confidence"]


def test_no_flagged_image_no_panel(tmp_path):
    anomalies, candidates, sets = _inputs(tmp_path)
    anomalies["defective"] = False
    assert figures.candidates_figure(anomalies, candidates, sets, top_k=2, class_names={}) is None


@pytest.fixture
def drawn_text(monkeypatch):
    """Every text the figures draw: (its ImageDraw, canvas width, canvas height, x, y, text)."""
    drawn, draw_text = [], ImageDraw.ImageDraw.text

    def recording(self, xy, text, *args, **kwargs):
        drawn.append((self, *self.im.size, *xy, text))
        return draw_text(self, xy, text, *args, **kwargs)

    monkeypatch.setattr(ImageDraw.ImageDraw, "text", recording)
    return drawn


# 40 characters, whose shown part (figures.NAME_CHARS) is as wide as the default font makes 10
FORTY = "WWWWWWWWWW, a forty-character class name"


def _panel_inputs(tmp_path, n_candidates: int, names: dict[int, str]):
    """One class-0 image flagged, with `n_candidates` candidates of 8 x 8 px (digits-sized, upscaled)
    that alternate between class 0 and class 1; conf_sim and sim choose candidate 0, conf the last."""
    anomalies = pd.DataFrame({
        "image_id": ["c0-p000"], "label": 0, "class_name": names[0], "prototype_id": 0,
        "image_path": [_png(tmp_path, "flagged", 50)], "predicted": 1, "p_target": 0.3, "reason": "label_mismatch",
        "defective": True, "beta": 0.5,
    })
    candidates = pd.DataFrame({
        "source_image_id": "c0-p000", "candidate_index": range(n_candidates),
        "p_target": [0.9 - 0.8 * k / max(1, n_candidates - 1) for k in range(n_candidates)],
        "predicted": [k % 2 for k in range(n_candidates)],
        "image_path": [_png(tmp_path, f"cand{k}", 100 + k) for k in range(n_candidates)],
    })

    def refined(choice):
        return pd.DataFrame({"image_id": [f"c0-p000/cand{choice:02d}"], "replaced_image_id": ["c0-p000"],
                             "candidate_index": [choice], "image_path": [candidates.image_path[choice]]})

    return anomalies, candidates, {"conf": refined(n_candidates - 1), "sim": refined(0), "conf_sim": refined(0)}


@pytest.mark.parametrize(("n_candidates", "name"), [(1, "English springer"), (3, FORTY), (20, FORTY), (20, "3")])
def test_candidate_panel_draws_no_text_past_its_canvas(tmp_path, drawn_text, n_candidates, name):
    """Whatever the number of candidates and the names' lengths: every text ends MARGIN px inside
    its canvas (title, body row, legend), the captions under neighbouring cells do not run into each
    other, and the picture's last columns are white."""
    anomalies, candidates, sets = _panel_inputs(tmp_path, n_candidates, {0: name, 1: FORTY})
    picture = figures.candidates_figure(anomalies, candidates, sets, top_k=2, class_names={0: name, 1: FORTY})
    assert drawn_text
    lines = {}
    for draw, width, height, x, y, text in drawn_text:
        assert x >= MARGIN - 1 and x + figures.text_width(text) <= width - MARGIN, (text, x, width)
        assert y + TEXT <= height, (text, y, height)
        lines.setdefault((id(draw), y), []).append((x, text))
    for texts in lines.values():
        texts.sort()
        for (x, text), (next_x, _) in itertools.pairwise(texts):
            assert x + figures.text_width(text) + figures.CAPTION_GAP <= next_x, (text, texts)
    assert (np.asarray(picture)[:, -MARGIN:] == 255).all()


def _ink_of_lines(lines: list[str], width: int, height: int) -> np.ndarray:
    """The lines drawn where _text_strip draws them, on a canvas wide enough for any of them."""
    canvas = Image.new("RGB", (width + 2000, height), (255, 255, 255))
    for i, line in enumerate(lines):
        ImageDraw.Draw(canvas).text((MARGIN, 2 + i * TEXT), line, fill=(0, 0, 0))
    return np.asarray(canvas)


@pytest.mark.parametrize("text", ["flagged image (left, its softmax) and its candidates from the same prototype "
                                  "(target softmax, > predicted class when another)", "wide: " + "W" * 40])
def test_text_strip_wraps_to_its_width_and_loses_no_ink(text):
    strip = figures._text_strip(text, 150)
    lines = figures.wrapped(text, 150 - 2 * MARGIN)
    assert " ".join(lines) == text and len(lines) >= 2
    assert strip.height == len(lines) * TEXT + 4
    # as wide as asked unless one word is wider; every line drawn whole (nothing cut at the edge)
    assert strip.width == max(150, *(figures.text_width(line) + 2 * MARGIN for line in lines))
    reference = _ink_of_lines(lines, strip.width, strip.height)
    assert (reference[:, strip.width:] == 255).all()
    assert np.array_equal(np.asarray(strip), reference[:, :strip.width])
    assert (np.asarray(strip)[:, -MARGIN:] == 255).all()


def test_legend_wraps_its_entries_to_its_width():
    entries = [("replaced", "conf_sim's choice"), ("pool", "conf_sim's pool (target, p > beta, top-2)"),
               ("plain", "other candidates; C / S: conf / sim choice"), ("wrong_class", "W" * 40)]
    legend = np.asarray(figures._legend(entries, 160))
    assert legend.shape[0] == 4 * TEXT + 4  # one entry a line at this width
    assert legend.shape[1] == max(160, MARGIN + 14 + figures.text_width("W" * 40) + MARGIN)
    for line, (key, _) in enumerate(entries):  # every swatch drawn whole, 11 x 11 px at the start of its line
        y = line * TEXT + 3
        assert (legend[y:y + 11, MARGIN:MARGIN + 11] == COLOURS[key]).all()
        assert (legend[y - 1, MARGIN:MARGIN + 11] == 255).all() and (legend[y + 11, MARGIN:MARGIN + 11] == 255).all()
    assert (legend[:, -MARGIN:] == 255).all()
    assert figures._legend(entries[:2], 2000).height == TEXT + 4  # one line when they fit


def test_candidate_captions_name_classes(tmp_path, drawn_text):
    """A candidate of another class is captioned with that class's name (as short as the flagged
    image's name), never its number."""
    names = {0: "zero", 1: "Xylophonist of the distinctive kind"}
    assert figures.candidate_caption(0.456, 1, 0, names) == "0.46 >" + figures.short_name(names[1])
    assert figures.short_name(names[1]) == names[1][:figures.NAME_CHARS]
    assert figures.candidate_caption(0.95, 0, 0, names) == "0.95"
    anomalies, candidates, sets = _panel_inputs(tmp_path, 4, names)
    figures.candidates_figure(anomalies, candidates, sets, top_k=2, class_names=names)
    texts = [text for *_, text in drawn_text]
    assert texts.count(f"0.63 >{figures.short_name(names[1])}") == 1  # candidate 1 of 4: p = 0.9 - 0.8 / 3
    assert not any(">1" in text for text in texts)
    assert "zero" in texts  # the flagged image's class (the pool did not fall back)
