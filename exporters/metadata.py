"""The meta dict that travels with every artifact, and helpers to write, read back and compare it.

Every artifact carries the same description of its contract: what to feed (layout, dtype, range,
quantization), what comes out (names, units), where it came from (config hash, tool versions). It is
written as ``model_meta.json`` beside the artifact and embedded in the artifact itself (ONNX
``metadata_props``, TFLite metadata, CoreML ``user_defined_metadata``), all with the same keys:

    {"name", "version", "description", "author", "license", "task": "regression",
     "input": {"name", "shape", "layout", "dtype", "color", "range", "mean", "std", "quantization",
               "crop"},
     "outputs": [{"name", "shape", "names", "units", "dtype", "quantization"}],
     "config_hash", "format", "precision", "tools": {distribution: version},
     "smoothing": {"alpha", "max_gap_s"}}

Models take RGB in [0, 1] and normalize internally, so ``mean`` = 0 and ``std`` = 1: the app feeds
pixel / 255. ``input.crop`` (image models of a face source) is the framing half of the crop spec of
pipeline/faces/crop.py (``CropSpec.framing()``: ``box_source``, ``scale``, ``shift_y``, ``padding``):
from which detector's box, at what scale and vertical shift, with what padding, the training crops
were framed; the other half (size, layout, channels, range, mean, std) is the rest of ``input``. ``predict``,
the goldens and the app read it from here. ``smoothing`` (face models, the ones with ``input.crop``) holds
the constants of the video filter of pipeline/faces/smoothing.py, which ``predict --smooth`` and the app's
``PoseSmoother`` read from here, so the two smooth alike.
Vector models (input (N, F)) use the same keys with layout ``"NC"`` and no color/range.

Usage: ``base = base_meta(name=..., version=..., ...)``; ``export_all`` derives each artifact's meta
with :func:`artifact_meta`. ``python -m exporters.metadata PATH`` prints a ``model_meta.json``.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from exporters.formats import FORMATS, Format
from pipeline.faces.smoothing import meta_entry as smoothing_entry
from pipeline.quant.pixels import PIXEL_SCALE, PIXEL_ZERO_POINT
from pipeline.runs import atomic_write_text

log = logging.getLogger(__name__)

META_FILE = "model_meta.json"
# int8 input of image models: x in [0, 1] -> q = round(x * 255) - 128, so a raw uint8 pixel p feeds p - 128.
IMAGE_INT8_QUANT = {"scale": PIXEL_SCALE, "zero_point": PIXEL_ZERO_POINT}
BASE_KEYS = ("name", "version", "description", "author", "license", "config_hash")


def base_meta(*, name: str, version: str, description: str, author: str, license: str, config_hash: str,
              output_names: Sequence[str] = ("yaw", "pitch", "roll"), units: str = "degrees",
              crop: dict | None = None) -> dict:
    """The artifact-independent part of the meta, as given by the caller. ``crop``: the training
    framing (``CropSpec.framing()``) of an image model whose inputs are face crops, else None; such a
    face model also gets the video smoothing constants (``smoothing``)."""
    return {"name": name, "version": version, "description": description, "author": author,
            "license": license, "config_hash": config_hash, "output_names": list(output_names),
            "units": units, "crop": dict(crop) if crop else None,
            "smoothing": smoothing_entry() if crop else None}


def tool_versions(distributions: Sequence[str]) -> dict[str, str]:
    """Installed versions of ``distributions`` ("not installed" for missing ones)."""
    out = {}
    for dist in distributions:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def artifact_meta(base: dict, fmt: Format | str, input_shape: Sequence[int], n_outputs: int, *,
                  int8_io: bool = False) -> dict:
    """The full meta of one artifact of ``fmt`` for a model taking NCHW (or NC) ``input_shape``.

    ``input_shape`` is the torch (channel-first) shape; the batch is written as 1. With ``int8_io``
    (formats whose row allows it) input and output are int8; the exporter fills the output quantization.
    """
    fmt = FORMATS[fmt] if isinstance(fmt, str) else fmt
    missing = [k for k in BASE_KEYS if k not in base]
    if missing:
        raise ValueError(f"meta is missing {missing}; build it with exporters.metadata.base_meta")
    shape = [1, *[int(d) for d in input_shape[1:]]]
    image = len(shape) == 4
    layout = fmt.layout if image else "NC"
    if layout == "NHWC":
        shape = [shape[0], shape[2], shape[3], shape[1]]
    channels = shape[1] if layout in ("NCHW", "NC") else shape[3]
    quantized_io = int8_io and fmt.int8_io
    names = list(base.get("output_names") or [f"y{i}" for i in range(n_outputs)])
    if len(names) != n_outputs:
        raise ValueError(f"meta output_names {names} do not match the model's {n_outputs} outputs")
    return {
        **{k: base[k] for k in ("name", "version", "description", "author", "license")},
        "task": "regression",
        "input": {
            "name": "image" if image else "input", "shape": shape, "layout": layout,
            "dtype": "int8" if quantized_io else "float32",
            "color": "RGB" if image else None, "range": [0.0, 1.0] if image else None,
            "mean": [0.0] * channels, "std": [1.0] * channels,
            "quantization": dict(IMAGE_INT8_QUANT) if quantized_io and image else None,
            **({"crop": dict(base["crop"])} if image and base.get("crop") else {}),
        },
        "outputs": [{
            "name": "pose" if image else "output", "shape": [1, n_outputs], "names": names,
            "units": base.get("units", "degrees"), "dtype": "int8" if quantized_io else "float32",
            "quantization": None,
        }],
        "config_hash": base["config_hash"],
        "format": fmt.name,
        "precision": fmt.precision,
        "tools": tool_versions(fmt.family_row.tools),
        **({"smoothing": dict(base["smoothing"])} if image and base.get("smoothing") else {}),
    }


def to_json(meta: dict) -> str:
    return json.dumps(meta, indent=2, sort_keys=True)


def write_meta(meta: dict, path: Path) -> Path:
    return atomic_write_text(Path(path), to_json(meta) + "\n")


def read_meta(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def compare_meta(expected: dict, actual: dict, rel: float = 1e-6) -> list[str]:
    """Differences between two meta dicts (key paths), floats compared to ``rel`` (float32 round trips)."""
    problems: list[str] = []

    def walk(a, b, where: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b)):
                if k not in a or k not in b:
                    problems.append(f"{where}.{k}: only in {'expected' if k in a else 'actual'}")
                else:
                    walk(a[k], b[k], f"{where}.{k}")
        elif isinstance(a, list | tuple) and isinstance(b, list | tuple):
            if len(a) != len(b):
                problems.append(f"{where}: length {len(a)} != {len(b)}")
            for i, (x, y) in enumerate(zip(a, b, strict=False)):
                walk(x, y, f"{where}[{i}]")
        elif isinstance(a, float | int) and isinstance(b, float | int) and not isinstance(a, bool):
            if not math.isclose(float(a), float(b), rel_tol=rel, abs_tol=0.0):
                problems.append(f"{where}: {a!r} != {b!r}")
        elif a != b:
            problems.append(f"{where}: {a!r} != {b!r}")

    walk(expected, actual, "meta")
    return problems


def set_io_quantization(meta: dict, which: str, dtype: str, scale: float | None, zero_point: int | None) -> None:
    """Record what the artifact actually has on its input (``which="input"``) or first output."""
    entry = meta["input"] if which == "input" else meta["outputs"][0]
    entry["dtype"] = dtype
    entry["quantization"] = None if scale is None else {"scale": float(scale), "zero_point": int(zero_point)}


if __name__ == "__main__":
    print(to_json(read_meta(Path(sys.argv[1]))))
