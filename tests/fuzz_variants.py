"""Seeded corrupt variants of every model format tf1infer reads, for the fuzz test.

Each variant is a copy of one intact source model (a zoo, Keras 1, Keras 3 or TF1
fixture, or a shared-corpus file) with one damage applied: truncation, flipped
bytes, a zeroed 4 KiB block, garbage, an empty file, or a structural edit a
stranger's file could carry (a ``model_config`` of the wrong JSON type, a missing
or resized weight, an absurd declared dataset size, a broken zip member, an empty
``checkpoint`` file...). ``variants(count, seed)`` yields the same variants for
the same arguments, so a failure is reproduced by its index.
"""

from __future__ import annotations

import io
import json
import random
import shutil
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "legacy_models"
CORPUS = ROOT.parent / "shared" / "corpus"


@dataclass(frozen=True)
class Source:
    """One intact model: ``load`` is what to pass to ``tf1infer.load`` (relative to the copy's root)."""

    name: str
    root: Path  # a file, or the directory that is copied whole
    load: str = ""  # relative path inside a copied directory ("" for the root itself)
    kind: str = "file"  # keras-h5, keras-v3, keras-json, saved-model, meta-graph, frozen-graph
    options: dict = field(default_factory=dict)


def sources() -> list[Source]:
    """Every fixture the variants are cut from; corpus entries only where ../shared is present."""
    found = [
        Source(f"zoo/{name}", ZOO / f"{name}.h5", kind="keras-h5", options=options)
        for name, options in [
            ("mlp", {}),
            ("cnn", {}),
            ("lstm", {}),
            ("gru", {}),
            ("embedding", {}),
            ("two_in_two_out", {}),
            ("custom_layer", {"custom_objects": "zoo"}),
            ("channels_first", {}),
            ("lambda", {}),
        ]
    ]
    found += [
        Source(f"keras1/{name}", ZOO / "keras1" / f"{name}.h5", kind="keras-h5")
        for name in ("rnn_sequential", "conv_merge", "conv_theano", "lambda_py35")
    ]
    found += [
        Source(f"keras3/{name}", ZOO / "keras3" / f"{name}.keras", kind="keras-v3")
        for name in ("two_in_two_out", "lambda")
    ]
    tf1 = ZOO / "tf1"
    found += [
        Source("tf1/frozen.pb", tf1 / "frozen.pb", kind="frozen-graph"),
        Source("tf1/frozen.pbtxt", tf1 / "frozen.pbtxt", kind="frozen-graph", options={"inputs": ["x"]}),
        Source("tf1/meta_v2", tf1 / "meta_v2", kind="meta-graph", options={"outputs": ["logits", "probs"]}),
        Source(
            "tf1/meta_v1",
            tf1 / "meta_v1",
            kind="meta-graph",
            options={"inputs": ["x:0"], "outputs": ["logits", "probs"]},
        ),
        Source(
            "tf1/meta_old_version",
            tf1 / "meta_old_version",
            kind="meta-graph",
            options={"outputs": ["logits", "probs"]},
        ),
        Source("tf1/saved_model", tf1 / "saved_model", kind="saved-model"),
        Source("tf1/tf2_saved_model", tf1 / "tf2_saved_model", kind="saved-model"),
        Source(
            "tf1/keras_json", tf1, load="keras_arch.json", kind="keras-json", options={"weights": "keras_weights.h5"}
        ),
    ]
    if (CORPUS / "MANIFEST.json").is_file():
        found += [
            Source("corpus/mini_xception", CORPUS / "keras205_gender_mini_xception.hdf5", kind="keras-h5"),
            # Lambda bytecode of Python 2.7 and 3.10, read by lambda_recovery whatever the damage.
            Source("corpus/lambda_py27", CORPUS / "keras208_lambda_normalize_py27.h5", kind="keras-h5"),
            Source("corpus/lambda_siamese", CORPUS / "keras280_lambda_siamese_absdiff.h5", kind="keras-h5"),
            Source(
                "corpus/half_plus_two",
                CORPUS / "tfserving_saved_model_half_plus_two_cpu" / "00000123",
                kind="saved-model",
            ),
            Source(
                "corpus/half_plus_three",
                CORPUS / "tfserving_saved_model_half_plus_three" / "00000123",
                kind="saved-model",
            ),
            Source(
                "corpus/bad_half_plus_two",
                CORPUS / "tfserving_bad_half_plus_two" / "00000123",
                kind="meta-graph",
                options={"outputs": ["Add:0"]},
            ),
        ]
    return found


@dataclass
class Variant:
    index: int
    source: str
    family: str
    detail: str
    path: str  # what to load
    options: dict


# ---------------------------------------------------------------- byte-level damage, any file


def _truncate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    keep = rng.randrange(0, max(1, len(data)))
    return data[:keep], f"kept {keep} of {len(data)} bytes"


def _flip(count: int) -> Callable:
    def flip(data: bytes, rng: random.Random) -> tuple[bytes, str]:
        out = bytearray(data)
        for _ in range(count):
            out[rng.randrange(len(out))] ^= rng.randrange(1, 256)
        return bytes(out), f"{count} byte(s) flipped"

    flip.__name__ = f"flip{count}"
    return flip


def _zero_block(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    offset = 1024 * rng.randrange(0, max(1, len(data) // 1024))
    out = bytearray(data)
    out[offset : offset + 4096] = bytes(len(out[offset : offset + 4096]))
    return bytes(out), f"4 KiB zeroed at offset {offset}"


def _garbage(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    keep = min(len(data), rng.choice([0, 8, 64]))
    return data[:keep] + rng.randbytes(max(0, len(data) - keep)), f"garbage after the first {keep} bytes"


def _empty(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    return b"", "empty file"


BYTE_DAMAGE = {
    "truncate": _truncate,
    "flip1": _flip(1),
    "flip10": _flip(10),
    "flip100": _flip(100),
    "zero4k": _zero_block,
    "garbage": _garbage,
    "empty": _empty,
}

# ---------------------------------------------------------------- structural edits of Keras HDF5 files

_BAD_CONFIGS = [
    ("int", "5"),
    ("string", '"Sequential"'),
    ("list", "[1, 2, 3]"),
    ("null", "null"),
    ("empty object", "{}"),
    ("class_name int", '{"class_name": 5, "config": {}}'),
    ("layers as dict", '{"class_name": "Functional", "config": {"layers": {"a": 1}}}'),
    ("layers of ints", '{"class_name": "Sequential", "config": {"layers": [1, 2]}}'),
    ("no config", '{"class_name": "Sequential"}'),
    ("truncated JSON", '{"class_name": "Sequential", "config": {"layers": ['),
    ("deeply nested", "[" * 200000 + "]" * 200000),
    ("unknown class", '{"class_name": "NotALayer", "config": {}}'),
]


def _h5_edit(path: Path, rng: random.Random) -> str:
    """One structural edit of a Keras HDF5 file, in place; returns what was done."""
    with h5py.File(path, "r+") as handle:
        weights = handle["model_weights"] if "model_weights" in handle else handle
        datasets: list[h5py.Dataset] = []
        weights.visititems(lambda name, obj: datasets.append(obj) if isinstance(obj, h5py.Dataset) else None)
        choice = rng.randrange(9)
        if choice == 0 and "model_config" in handle.attrs:
            name, text = rng.choice(_BAD_CONFIGS)
            handle.attrs["model_config"] = text
            return f"model_config replaced: {name}"
        if choice == 1 and "model_config" in handle.attrs:
            handle.attrs["model_config"] = np.void(b"\xff\xfe{\x80 not utf-8")
            return "model_config as opaque bytes"
        if choice == 2 and "model_config" in handle.attrs:
            config = json.loads(handle.attrs["model_config"])
            layers = _config_layers(config)
            if layers:
                victim = rng.randrange(len(layers))
                key = rng.choice(["config", "class_name", "inbound_nodes", "name"])
                if key in layers[victim]:
                    layers[victim][key] = rng.choice([None, 7, "x", [], {}])
                    handle.attrs["model_config"] = json.dumps(config)
                    return f"layer {victim}'s {key} of the wrong type"
        if choice == 3:
            attr, value = rng.choice(
                [
                    ("keras_version", "1.2.2"),
                    ("keras_version", "3.1.0"),
                    ("keras_version", 7),
                    ("keras_version", np.void(b"\xff\xff")),
                    ("backend", "theano"),
                    ("backend", 3.5),
                ]
            )
            handle.attrs[attr] = value
            return f"{attr} set to {value!r}"
        if choice == 4 and datasets:
            victim = rng.choice(datasets)
            name = victim.name
            del handle[name]
            return f"weight {name} deleted"
        if choice == 5 and datasets:
            victim = rng.choice(datasets)
            name, shape = victim.name, victim.shape
            del handle[name]
            handle[name] = np.ones(tuple(d + 1 for d in shape) or (2,), dtype="float32")
            return f"weight {name} resized from {shape}"
        if choice == 6 and datasets:
            victim = rng.choice(datasets)
            name = victim.name
            del handle[name]
            handle.create_dataset(name, shape=(2**40,), dtype="float32", chunks=(1024,))
            return f"weight {name} declared (2**40,) float32 with no data"
        if choice == 7 and datasets:
            victim = rng.choice(datasets)
            name = victim.name
            del handle[name]
            handle[name] = np.array([b"not", b"numbers"])
            return f"weight {name} replaced by strings"
        groups = [obj for obj in weights.values() if isinstance(obj, h5py.Group)]
        if groups:
            group = rng.choice(groups)
            attr, value = rng.choice(
                [
                    ("weight_names", np.array([b"missing/kernel:0"])),
                    ("weight_names", 5),
                    ("weight_names", np.array([], dtype="S1")),
                ]
            )
            group.attrs[attr] = value
            return f"{group.name} {attr} set to {value!r}"
        handle.attrs["layer_names"] = np.array([b"ghost"])
        return "layer_names names a missing layer"


def _config_layers(config) -> list:
    inner = config.get("config") if isinstance(config, dict) else None
    if isinstance(inner, list):
        return [layer for layer in inner if isinstance(layer, dict)]
    if isinstance(inner, dict) and isinstance(inner.get("layers"), list):
        return [layer for layer in inner["layers"] if isinstance(layer, dict)]
    return []


# ---------------------------------------------------------------- structural edits of .keras archives


def _keras_v3_edit(path: Path, rng: random.Random) -> str:
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info.filename) for info in archive.infolist()}
    choice = rng.randrange(6)
    detail = ""
    if choice == 0:
        name = rng.choice(sorted(members))
        data = bytearray(members[name])
        if data:
            data[rng.randrange(len(data))] ^= 0x5A
        _write_zip(path, {**members, name: bytes(data)}, corrupt_crc_of=name, original=members[name])
        return f"member {name} changed under its CRC"
    if choice == 1:
        members["config.json"], detail = rng.choice(
            [
                (b"\xff\xfe\x00{", "invalid UTF-8"),
                (b'{"class_name": "Functional", "config": ', "truncated JSON"),
                (b"[1, 2]", "a list"),
                (b'{"class_name": "Functional", "config": {"layers": 5}}', "layers of the wrong type"),
                (b'"text"', "a string"),
            ]
        )
        detail = f"config.json: {detail}"
    elif choice == 2:
        name = rng.choice(sorted(members))
        del members[name]
        detail = f"member {name} removed"
    elif choice == 3:
        members["metadata.json"], detail = rng.choice([(b"\x80\x81", "invalid UTF-8"), (b"7", "a number")])
        detail = f"metadata.json: {detail}"
    elif choice == 4 and "model.weights.h5" in members:
        data, what = rng.choice([_truncate, _flip(10), _zero_block])(members["model.weights.h5"], rng)
        members["model.weights.h5"] = data
        detail = f"model.weights.h5: {what}"
    else:
        data, what = rng.choice(list(BYTE_DAMAGE.values()))(path.read_bytes(), rng)
        path.write_bytes(data)
        return f"archive bytes: {what}"
    _write_zip(path, members)
    return detail


def _write_zip(path: Path, members: dict[str, bytes], corrupt_crc_of: str | None = None, original: bytes = b"") -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, original if name == corrupt_crc_of else data)
    raw = buffer.getvalue()
    if corrupt_crc_of is not None:  # Same length, other bytes: the stored CRC no longer matches.
        start = raw.find(original) if original else -1
        if start >= 0:
            raw = raw[:start] + members[corrupt_crc_of] + raw[start + len(original) :]
    path.write_bytes(raw)


# ---------------------------------------------------------------- structural edits of TF1 directories


def _directory_edit(root: Path, rng: random.Random) -> str:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    checkpoint_files = [p for p in files if p.name == "checkpoint"]
    choice = rng.randrange(4)
    if choice == 0 and checkpoint_files:
        target = checkpoint_files[0]
        text, what = rng.choice(
            [
                ("", "empty"),
                ('model_checkpoint_path: "gone.ckpt"\n', "names a missing checkpoint"),
                ("this is not a proto {{{", "garbage text"),
                ("\xff\xfe", "invalid UTF-8"),
            ]
        )
        target.write_bytes(text.encode("latin-1") if "\xff" in text else text.encode())
        return f"checkpoint file: {what}"
    if choice == 1:
        victim = rng.choice(files)
        victim.unlink()
        return f"{victim.relative_to(root)} removed"
    victim = rng.choice(files)
    data, what = rng.choice(list(BYTE_DAMAGE.values()))(victim.read_bytes(), rng)
    victim.write_bytes(data)
    return f"{victim.relative_to(root)}: {what}"


# ---------------------------------------------------------------- the generator


def _families(source: Source) -> list[str]:
    byte_families = list(BYTE_DAMAGE)
    if source.kind == "keras-h5":
        return byte_families + ["h5-edit", "h5-edit", "h5-edit"]
    if source.kind == "keras-v3":
        return byte_families + ["zip-edit", "zip-edit", "zip-edit"]
    if source.root.is_dir():
        return byte_families + ["dir-edit", "dir-edit"]
    return byte_families


def make_variant(index: int, seed: int, workdir: Path) -> Variant:
    """Variant ``index`` of the campaign ``seed``, written under ``workdir``."""
    rng = random.Random(f"{seed}:{index}")
    all_sources = sources()
    source = all_sources[index % len(all_sources)]
    family = rng.choice(_families(source))
    target_dir = workdir / f"{index:05d}"
    if target_dir.exists():
        shutil.rmtree(target_dir)
    target_dir.mkdir(parents=True)
    options = dict(source.options)
    if source.root.is_dir():
        root = target_dir / source.root.name
        shutil.copytree(source.root, root)
        load = root / source.load if source.load else root
        if "weights" in options:
            options["weights"] = str(root / options["weights"])
        if family == "dir-edit":
            detail = _directory_edit(root, rng)
        else:
            files = sorted(p for p in root.rglob("*") if p.is_file())
            victim = load if load.is_file() else rng.choice(files)
            data, what = BYTE_DAMAGE[family](victim.read_bytes(), rng)
            victim.write_bytes(data)
            detail = f"{victim.relative_to(root)}: {what}"
    else:
        load = target_dir / source.root.name
        shutil.copyfile(source.root, load)
        if family == "h5-edit":
            detail = _h5_edit(load, rng)
        elif family == "zip-edit":
            detail = _keras_v3_edit(load, rng)
        else:
            data, detail = BYTE_DAMAGE[family](load.read_bytes(), rng)
            load.write_bytes(data)
    return Variant(index, source.name, family, detail, str(load), options)


def variants(count: int, seed: int, workdir: Path) -> Iterator[Variant]:
    for index in range(count):
        yield make_variant(index, seed, workdir)


def describe(variant: Variant) -> str:
    return f"#{variant.index} {variant.source} [{variant.family}] {variant.detail}"


__all__ = ["Source", "Variant", "describe", "make_variant", "sources", "variants"]
