"""The report's refinement pictures (detdistill.figures) on hand-made images and tables: each cell's
frame colour says what the tables say (flag reason, replacement, conf_sim's pool and choice)."""

import numpy as np
import pandas as pd
from PIL import Image

from detdistill import figures
from detdistill.figures import BORDER, CELL, COLOURS, TEXT


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


def test_candidate_panel_frames_pool_and_choice(tmp_path):
    anomalies, candidates, sets = _inputs(tmp_path)
    picture = figures.candidates_figure(anomalies, candidates, sets, top_k=2, class_names={0: "zero"})
    side = CELL + 2 * BORDER
    row_height = side + 2 * TEXT
    title = TEXT + 4

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
