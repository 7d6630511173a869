"""Temperature scaling (`refinement.beta_mode: temperature`, detdistill.calibration): the fit, the
detector that stores its T, the scores it gives, and the anomaly report that sets the plain
softmax's verdicts beside the scaled one's."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from detdistill import data, io
from detdistill.calibration import TEMPERATURE_BOUNDS, calibration_metrics, fit_temperature
from detdistill.stages import anomalies as anomaly_stage
from detdistill.stages.classifiers import score_images, train_classifier
from detdistill.stages.manifest import prepare_data
from detdistill.train import model_temperature, read_model_meta

from conftest import markdown_table_rows


def _overconfident(temperature: float, n: int = 4000, classes: int = 5, seed: int = 0):
    """Labels drawn from softmax(z): z is calibrated, so z * T reads T times too sharp."""
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(n, classes, generator=generator, dtype=torch.float64) * 2
    labels = torch.multinomial(z.softmax(1), 1, generator=generator).squeeze(1)
    return z * temperature, labels


@pytest.mark.parametrize("true_t", [0.4, 2.5])
def test_fit_recovers_the_temperature_that_calibrates(true_t):
    logits, labels = _overconfident(true_t)
    fitted = fit_temperature(logits, labels)
    assert fitted == pytest.approx(true_t, rel=0.08)
    metrics = calibration_metrics(logits, labels, fitted)
    assert metrics["nll_after"] < metrics["nll_before"] and metrics["ece_after"] < metrics["ece_before"]
    assert metrics["ece_after"] < 0.03 and not metrics["at_bound"]
    # the fit is the NLL minimum: a step either way is worse
    nll = lambda t: float(torch.nn.functional.cross_entropy(logits / t, labels))  # noqa: E731
    assert nll(fitted) <= min(nll(fitted * 1.1), nll(fitted / 1.1))


def test_the_fit_stays_within_its_bounds():
    labels = torch.arange(3).repeat(10)
    # every image right: the NLL falls as T -> 0 until float64 cannot tell it from 0
    fitted = fit_temperature(torch.eye(3).repeat(10, 1) * 5, labels)
    assert TEMPERATURE_BOUNDS[0] <= fitted < 0.3
    # the labels say nothing the logits know: the NLL falls as T grows, to the upper bound
    uninformative = torch.eye(3)[[1, 2, 0]].repeat(10, 1) * 0.01 + torch.eye(3).repeat(10, 1) * 0.01
    fitted = fit_temperature(uninformative + torch.eye(3)[[2, 0, 1]].repeat(10, 1), labels)
    assert fitted == pytest.approx(TEMPERATURE_BOUNDS[1], rel=1e-5)
    assert calibration_metrics(uninformative, labels, fitted)["at_bound"]


@pytest.fixture(scope="module")
def temperature_detector(tmp_path_factory):
    """A ConvNet detector trained briefly (CutMix, under-confident) on digits with a validation
    split, with temperature scaling on; its manifest and source."""
    tmp = tmp_path_factory.mktemp("temperature")
    source = {"kind": "digits", "test_fraction": 0.2, "validation_fraction": 0.2, "classes": ["0", "1", "2", "3"]}
    prepare_data(source_cfg=source, seed=0, out_manifest=tmp / "manifest.parquet", out_unreadable=tmp / "unreadable.txt")
    clf = {"model": "convnet", "width": 8, "temperature_scaling": True,
           "train": {"epochs": 4, "batch_size": 32, "optimizer": "adam", "lr": 0.003, "schedule": "constant",
                     "cutmix_alpha": 1.0, "flip": False, "seed": 0}}
    out = {name: tmp / name for name in ("model.safetensors", "metrics.json", "test_scores.parquet")}
    train_classifier(manifest_path=tmp / "manifest.parquet", source_cfg=source, image_size=16, clf_cfg=clf,
                     out_model=out["model.safetensors"], out_metrics=out["metrics.json"], out_test_scores=out["test_scores.parquet"])
    return tmp, source


def test_detector_fits_its_temperature_on_validation_images_and_stores_it(temperature_detector):
    tmp, source = temperature_detector
    metrics = json.loads((tmp / "metrics.json").read_text())
    fit = metrics["temperature_scaling"]
    manifest = pd.read_parquet(tmp / "manifest.parquet")
    assert fit["images"] == int((manifest.split == "val").sum()) > 0
    assert fit["nll_after"] <= fit["nll_before"]
    assert model_temperature(tmp / "model.safetensors") == fit["temperature"] != 1.0
    # the fit is on validation images, not test images: refitting on the validation logits gives T back
    from detdistill.train import load_model, predict

    validation = manifest[manifest.split == "val"]
    logits = predict(load_model(tmp / "model.safetensors", "cpu"), data.load_images(validation, source, 16), "cpu")["logits"]
    assert fit_temperature(logits, data.label_tensor(validation)) == pytest.approx(fit["temperature"], rel=1e-6)
    test_scores = pd.read_parquet(tmp / "test_scores.parquet")
    assert metrics["test_target_softmax_median"] == pytest.approx(float(test_scores.p_target.quantile(0.5, interpolation="lower")))
    assert not np.allclose(test_scores.p_target, test_scores.p_target_raw)


def test_scores_are_the_softmax_at_the_stored_temperature(temperature_detector, tmp_path):
    tmp, source = temperature_detector
    from detdistill.train import load_model, predict

    test = pd.read_parquet(tmp / "manifest.parquet").query("split == 'test'").head(20).reset_index(drop=True)
    images = data.load_images(test, source, 16)
    rows = []
    for i, image in enumerate(images):
        io.write_png(image, tmp_path / f"{i}.png")
        rows.append({"image_id": str(i), "label": int(test.label[i]), "image_path": str(tmp_path / f"{i}.png")})
    scored = score_images(tmp / "model.safetensors", pd.DataFrame(rows))
    temperature = model_temperature(tmp / "model.safetensors")
    pngs = data.load_png_images(pd.DataFrame(rows).image_path)
    assert torch.equal(pngs, images)  # uint8 images round-trip through PNG
    logits = predict(load_model(tmp / "model.safetensors", "cpu"), pngs, "cpu")["logits"]
    labels = data.label_tensor(test)
    expected = (logits / temperature).softmax(1).gather(1, labels[:, None]).squeeze(1).numpy()
    np.testing.assert_allclose(scored.p_target, expected, rtol=1e-5)
    np.testing.assert_allclose(scored.p_target_raw, logits.softmax(1).gather(1, labels[:, None]).squeeze(1).numpy(), rtol=1e-5)
    assert (scored.predicted == logits.argmax(1).numpy()).all() and (scored.temperature == temperature).all()


def test_a_model_without_temperature_scores_as_before(tmp_path):
    from detdistill.models import build_model
    from detdistill.train import save_model

    save_model(build_model("convnet", 2, 16, 4), tmp_path / "m.safetensors")
    assert model_temperature(tmp_path / "m.safetensors") is None
    assert "temperature" not in read_model_meta(tmp_path / "m.safetensors")["meta"]
    io.write_png(torch.zeros(3, 16, 16, dtype=torch.uint8), tmp_path / "a.png")
    scored = score_images(tmp_path / "m.safetensors", pd.DataFrame({"image_id": ["a"], "label": [0], "image_path": [str(tmp_path / "a.png")]}))
    assert list(scored.columns) == ["image_id", "label", "image_path", "predicted", "p_target", "feature"]


def _class_manifest(tmp_path):
    path = tmp_path / "manifest.parquet"
    pd.DataFrame({"image_id": ["m0", "m1"], "label": [0, 1], "class_name": ["zero", "one"], "split": ["train"] * 2}).to_parquet(path)
    return path


def test_anomaly_report_sets_the_plain_softmax_beside_the_scaled_one(tmp_path):
    # T = 0.5 sharpened the under-confident detector: 0.8 and 0.85 plain read above 0.9 scaled
    scores = pd.DataFrame({"image_id": ["a", "b", "c", "d"], "label": [0, 0, 1, 1], "prototype_id": [0, 1, 0, 1],
                           "predicted": [0, 0, 1, 0], "p_target": [0.95, 0.6, 0.97, 0.2], "p_target_raw": [0.8, 0.55, 0.85, 0.3],
                           "temperature": 0.5, "image_path": ["a.png", "b.png", "c.png", "d.png"]})
    test = pd.DataFrame({"image_id": ["t0", "t1"], "label": [0, 1], "predicted": [0, 1], "p_target": [0.99, 0.95],
                         "p_target_raw": [0.7, 0.93]})
    validation = pd.DataFrame({"image_id": ["v0", "v1", "v2"], "label": [0, 1, 1], "predicted": [0, 1, 1], "p_target": [0.9, 0.8, 0.99]})
    paths = {name: tmp_path / f"{name}.parquet" for name in ("scores", "test", "validation")}
    for frame, name in ((scores, "scores"), (test, "test"), (validation, "validation")):
        frame.to_parquet(paths[name])
    kwargs = dict(detector_test_scores_path=paths["test"], manifest_path=_class_manifest(tmp_path), beta=0.9,
                  out_parquet=tmp_path / "a.parquet", out_report=tmp_path / "a.md", beta_mode="temperature",
                  validation_scores_path=paths["validation"])
    anomaly_stage.detect_anomalies(scores_path=paths["scores"], **kwargs)
    anomalies = pd.read_parquet(tmp_path / "a.parquet")
    assert (anomalies.beta == 0.9).all()
    assert anomalies.reason.tolist() == ["normal", "low_confidence", "normal", "label_mismatch"]
    text = (tmp_path / "a.md").read_text()
    rows = {"|".join(row) for row in markdown_table_rows(text)}
    assert "fixed (paper)|0.9|4 of 4 (100.0%)|1 of 2 (50.0%)" in rows
    assert "temperature-scaled softmax, T = 0.500 (used)|0.900|2 of 4 (50.0%)|0 of 2 (0.0%)" in rows
    assert "beta = 0.9 on the softmax at temperature 0.500" in text and "on 3 real validation images" in text
    assert "end of its search range" not in text
    # a fit at the lower bound (a detector right on every validation image) is called out
    scores.assign(temperature=TEMPERATURE_BOUNDS[0]).to_parquet(paths["scores"])
    anomaly_stage.detect_anomalies(scores_path=paths["scores"], **kwargs)
    text = (tmp_path / "a.md").read_text()
    assert "T is at the end of its search range (0.05, 20.0)" in text and "right on (nearly) every validation image" in text
    # scores from a detector without a temperature cannot pass for scaled ones
    scores.drop(columns=["temperature", "p_target_raw"]).to_parquet(paths["scores"])
    with pytest.raises(data.DataError, match=r"without a fitted temperature.*delete the detector's model\.safetensors"):
        anomaly_stage.detect_anomalies(scores_path=paths["scores"], **kwargs)
