"""Classifiers read from a file (`detector.weights`, `judge.weights`, a `teacher` mapping) rather
than trained in the run: this project's own safetensors (detdistill.train.save_model), a plain
safetensors state dict, or a torch file (.pth/.pt/.pth.tar) such as RDED's published observers,
which are torchvision reference-script checkpoints ({"model": state_dict, "optimizer": ...,
"args": argparse.Namespace}).

Torch files are read with `weights_only=True`, allowing `argparse.Namespace` and nothing else, so
a file cannot run code when read. Keys are mapped onto detdistill.models.Classifier: a
DataParallel `module.` prefix is dropped, torchvision's ResNet names (conv1, bn1, layer1.0.conv1,
..., fc) become backbone.* and classifier.*. The normalisation buffers (mean, std) come from the
config's `normalization`, since foreign files carry none (RDED's observers expect ImageNet's).

`check_file` reads only key names and shapes (safetensors headers, a memory-mapped torch file),
so the workflow can check the file against the configured architecture before any job runs."""

from __future__ import annotations

import argparse
import hashlib
import pickle
import re
from pathlib import Path

import torch

from .data import DataError

#: the buffers every Classifier carries and the config, not the file, decides
NORMALIZATION_KEYS = ("mean", "std")
#: where a torch checkpoint keeps its weights (torchvision's reference scripts: `model`)
STATE_DICT_ENTRIES = ("model", "state_dict")
#: suffixes read as safetensors; every other file is read as a torch file
SAFETENSORS_SUFFIXES = (".safetensors",)
#: missing or unexpected keys shown in a message, then the count
SHOWN_KEYS = 3


class CheckpointError(DataError):
    """A classifier file that cannot be used as configured; the message names the file and what differs."""


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _torch_load(path: Path, mmap: bool):
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)


def _read_torch(path: Path) -> dict:
    try:
        try:
            loaded = _torch_load(path, mmap=True)
        except RuntimeError as error:
            if "mmap" not in str(error):
                raise
            loaded = _torch_load(path, mmap=False)  # the legacy (pre-zip) format cannot be memory-mapped
    except pickle.UnpicklingError as error:
        # torch names the global as "Unsupported global: GLOBAL x.y" or "unsupported GLOBAL x.y whose ..."
        found = re.search(r"GLOBAL ([\w.]+)", str(error))
        what = f"`{found.group(1)}`" if found else "an object that is not tensors or containers"
        raise CheckpointError(
            f"{path}: refused to unpickle {what} (only tensors, containers and argparse.Namespace are allowed, "
            "so reading a file cannot run code); if you trust the file, re-save its state dict alone (load it "
            "with weights_only=False in a session of your own, then torch.save its 'model' entry)"
        ) from None
    except Exception as error:  # truncated or not a torch file: zip and pickle errors alike
        raise CheckpointError(f"{path}: cannot be read as a torch file ({_first_line(error)}); is it complete?") from None
    return _unwrap(loaded, path)


def _first_line(error: Exception) -> str:
    """The first sentence of an error's message (torch's zip errors go on for several)."""
    text = str(error).strip().splitlines()
    return text[0].split(". ")[0].rstrip(".") if text else type(error).__name__


def _unwrap(loaded, path: Path) -> dict:
    """The state dict inside a checkpoint: its `model` or `state_dict` entry, else the dict itself."""
    if isinstance(loaded, dict):
        for entry in STATE_DICT_ENTRIES:
            if isinstance(loaded.get(entry), dict):
                loaded = loaded[entry]
                break
    if not isinstance(loaded, dict) or not loaded or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise CheckpointError(f"{path}: holds no state dict (a mapping of tensor names to tensors, "
                              f"or one under {' or '.join(map(repr, STATE_DICT_ENTRIES))})")
    return loaded


def _read_safetensors(path: Path, shapes_only: bool) -> dict:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            names = handle.keys()  # a safe_open handle is no mapping: it cannot be iterated itself
            if shapes_only:
                return {key: tuple(handle.get_slice(key).get_shape()) for key in names}
            return {key: handle.get_tensor(key) for key in names}
    except Exception as error:
        raise CheckpointError(f"{path}: cannot be read as safetensors ({_first_line(error)}); is it complete?") from None


def read_state_dict(path, shapes_only: bool = False) -> dict:
    """The file's tensors under detdistill's Classifier names (or their shapes, `shapes_only`)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if path.name.endswith(SAFETENSORS_SUFFIXES):
        tensors = _read_safetensors(path, shapes_only)
    else:
        tensors = _read_torch(path)
        if shapes_only:
            tensors = {key: tuple(value.shape) for key, value in tensors.items()}
    return to_classifier_keys(tensors)


def to_classifier_keys(tensors: dict) -> dict:
    """DataParallel's `module.` prefix dropped; torchvision layout (fc.*, conv1.*, ...) moved under
    backbone.* with fc.* as classifier.*. Keys already in detdistill's layout stay as they are."""
    if tensors and all(key.startswith("module.") for key in tensors):
        tensors = {key[len("module."):]: value for key, value in tensors.items()}
    if any(key.startswith(("backbone.", "classifier.")) for key in tensors):
        return dict(tensors)
    mapped = {}
    for key, value in tensors.items():
        if key.startswith("fc."):
            mapped["classifier." + key[len("fc."):]] = value
        else:
            mapped["backbone." + key] = value
    return mapped


def _shape(value) -> tuple:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else tuple(value)


def _keys(keys, count: int) -> str:
    shown = ", ".join(sorted(keys)[:SHOWN_KEYS])
    return f"{count} ({shown}{', ...' if count > SHOWN_KEYS else ''})"


def compare(expected: dict, found: dict, *, num_classes: int) -> str | None:
    """What differs between a model's state dict (`expected`) and a file's, as one phrase; None when
    every tensor the model needs is there with its shape. Normalisation buffers are not compared."""
    head = found.get("classifier.weight")
    if head is not None and len(_shape(head)) == 2 and _shape(head)[0] != num_classes:
        return f"expects {num_classes} classes, file has {_shape(head)[0]}: fc.weight {_shape(head)}"
    needed = {key for key in expected if key not in NORMALIZATION_KEYS}
    given = {key for key in found if key not in NORMALIZATION_KEYS}
    missing, unexpected = needed - given, given - needed
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {_keys(missing, len(missing))}")
        if unexpected:
            parts.append(f"unexpected {_keys(unexpected, len(unexpected))}")
        return "keys differ from the architecture: " + "; ".join(parts)
    for key in sorted(needed):
        if _shape(expected[key]) != _shape(found[key]):
            return f"{key}: expects shape {_shape(expected[key])}, file has {_shape(found[key])}"
    return None


def _normalization_differs(model, found: dict) -> str | None:
    """A file that brings its own mean/std (detdistill's own files) must agree with the config's."""
    for key in NORMALIZATION_KEYS:
        value = found.get(key)
        if isinstance(value, torch.Tensor) and not torch.allclose(value.float(), getattr(model, key)):
            return (f"the file normalises inputs with {key} {[round(v, 4) for v in value.flatten().tolist()]}, the "
                    f"configured normalization with {[round(v, 4) for v in getattr(model, key).flatten().tolist()]}")
    return None


def describe(build: dict) -> str:
    return (f"{build['name']} ({build.get('architecture', 'detdistill')} architecture, {build['num_classes']} classes, "
            f"{build['image_size']} px, width {build.get('width', 64)})")


def check_file(path, build: dict) -> None:
    """Raise CheckpointError when the file cannot be read, or its keys or shapes are not those of
    `build_model(**build)`; reads key names and shapes only where the format allows."""
    from .models import build_model

    expected = build_model(**build).state_dict()
    problem = compare(expected, read_state_dict(path, shapes_only=True), num_classes=build["num_classes"])
    if problem:
        raise CheckpointError(f"{path} does not fit {describe(build)}: {problem}")


def load_classifier(path, build: dict):
    """`build_model(**build)` with the file's weights (mean/std from `build`'s normalization), in eval mode."""
    from .models import build_model

    model = build_model(**build)
    found = read_state_dict(path)
    problem = compare(model.state_dict(), found, num_classes=build["num_classes"]) or _normalization_differs(model, found)
    if problem:
        raise CheckpointError(f"{path} does not fit {describe(build)}: {problem}")
    state = {key: value for key, value in found.items() if key not in NORMALIZATION_KEYS}
    state.update({key: getattr(model, key) for key in NORMALIZATION_KEYS})
    model.load_state_dict(state)
    return model.eval()
