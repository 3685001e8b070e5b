"""int8 against float32 on TF Lite: speed, and agreement on crops of real photographs.

One fresh process per model (``--worker int8``) loads it twice on the TF Lite
backend: float32, and ``precision="int8"`` calibrated on grey crops of some of
scikit-image's sample photographs (:data:`CALIBRATION_PHOTOS`). Both are timed
interleaved at each batch size (so that a slow spell of the machine falls on
both), then :meth:`~tf1infer.Predictor.precision_report` compares int8 with
float32 on crops of the other photographs (:data:`HELD_OUT_PHOTOS`), which
calibration never saw: top-1 agreement, and the max and mean absolute
deviation of the scores.

scikit-image is in the ``bench`` and ``test`` extras; the core never imports it.
"""

from __future__ import annotations

import numpy as np

INT8_MODELS = ("mini_xception",)
# Photographs shipped inside scikit-image (no download): calibration from these...
CALIBRATION_PHOTOS = ("camera", "coins", "moon", "page", "text", "brick", "grass", "gravel")
# ...and the held-out comparison from these.
HELD_OUT_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "retina", "hubble_deep_field", "immunohistochemistry")
HELD_OUT_ROWS = 1000


def photo_crops(names, size: int = 64, stride: int = 32) -> np.ndarray:
    """Grey ``size`` x ``size`` crops every ``stride`` pixels of scikit-image's photographs ``names``.

    Returns float32 ``(n, size, size, 1)`` in [0, 1], in photograph order.
    """
    from skimage import color, data
    from skimage.util import img_as_float32

    crops = []
    for name in names:
        image = getattr(data, name)()
        if image.ndim == 3:
            image = color.rgb2gray(image[..., :3])
        image = img_as_float32(image)
        for top in range(0, image.shape[0] - size + 1, stride):
            for left in range(0, image.shape[1] - size + 1, stride):
                crops.append(image[top : top + size, left : left + size])
    return np.stack(crops)[..., None]


def mini_xception_inputs(crops: np.ndarray) -> np.ndarray:
    """The face_classification project's preprocessing: pixels in [0, 1] scaled to [-1, 1]."""
    return ((crops - 0.5) * 2.0).astype(np.float32)


def held_out_inputs(rows: int = HELD_OUT_ROWS) -> np.ndarray:
    """``rows`` held-out crops spread evenly over :data:`HELD_OUT_PHOTOS`."""
    crops = mini_xception_inputs(photo_crops(HELD_OUT_PHOTOS))
    return crops[np.linspace(0, len(crops) - 1, min(rows, len(crops))).round().astype(int)]


def run_worker(model_path: str, batch_sizes: list[int], quick: bool = False) -> dict:
    """Load float32 and int8, time both interleaved (short rounds when ``quick``), compare on held-out crops."""
    import tf1infer
    from tf1infer.bench.timing import FULL, QUICK, measure
    from tf1infer.runtime.kernels import cpu_vector_extensions

    calibration = mini_xception_inputs(photo_crops(CALIBRATION_PHOTOS))
    held_out = held_out_inputs()
    with (
        tf1infer.load(model_path, backend="tflite") as fp32,
        tf1infer.load(model_path, backend="tflite", precision="int8", calibration=calibration) as int8,
    ):
        timings = {}
        for rows in batch_sizes:
            x = held_out[:rows] if rows <= len(held_out) else np.resize(held_out, (rows,) + held_out.shape[1:])
            measured = measure(
                {"float32": lambda: fp32.predict_on_batch(x), "int8": lambda: int8.predict_on_batch(x)},  # noqa: B023
                rows,
                QUICK if quick else FULL,
            )
            timings[rows] = {label: round(result["us_per_sample"], 1) for label, result in measured.items()}
        accuracy = int8.precision_report(held_out)["precisions"]["int8"]
        report = int8.backend_report
    (output,) = accuracy["outputs"].values()
    return {
        "us_per_sample": timings,
        "calibration_rows": report["calibration_rows"],
        "held_out_rows": len(held_out),
        "top1_agreement": output.get("top1_agreement"),
        "max_abs": output["max_abs"],
        "mean_abs": output["mean_abs"],
        "int8_dot_products": report["int8_dot_products"],
        "cpu": " ".join(cpu_vector_extensions()),
    }


def report_int8(models: dict[str, str], batch_sizes: list[int], spawn) -> list[dict]:
    """Each model in a fresh process through ``spawn(path, batch_sizes)``: a record, or why it failed (a string)."""
    records = []
    for model, path in models.items():
        print(f"  int8: {model}, float32 and int8 TF Lite", flush=True)
        result = spawn(path, batch_sizes)
        records.append({"model": model, "error": result} if isinstance(result, str) else {"model": model, **result})
    for line in int8_md(records).splitlines():
        print("  " + line)
    return records


INT8_METHOD = (
    '`backend="tflite"` at float32 and at `precision="int8"` (calibrated on up to 500 grey 64x64 crops of '
    "scikit-image's photographs " + ", ".join(CALIBRATION_PHOTOS) + "), timed interleaved in one process; "
    "agreement measured by `precision_report` on 1,000 crops of other photographs ("
    + ", ".join(HELD_OUT_PHOTOS)
    + "), which calibration never saw."
)


def int8_md(records: list[dict]) -> str:
    """A markdown table: per model, float32 and int8 us/sample per batch size, and the accuracy figures beside."""
    done = [r for r in records if "error" not in r]
    if not records:
        return ""
    sizes = sorted({int(size) for r in done for size in r["us_per_sample"]})
    lines = [
        "| model | "
        + " | ".join(f"batch {size}: float32 / int8 us (speed-up)" for size in sizes)
        + " | top-1 agreement | max / mean abs deviation | int8 dot products in this CPU |",
        "| --- | " + " | ".join("---:" for _ in sizes) + " | ---: | ---: | --- |",
    ]
    for r in done:
        cells = []
        for size in sizes:
            pair = r["us_per_sample"].get(str(size)) or r["us_per_sample"].get(size)
            cells.append(f"{pair['float32']:,.0f} / {pair['int8']:,.0f} ({pair['float32'] / pair['int8']:.2f}x)")
        agreement = f"{r['top1_agreement']:.1%} of {r['held_out_rows']:,}" if r["top1_agreement"] is not None else "-"
        lines.append(
            f"| {r['model']} | "
            + " | ".join(cells)
            + f" | {agreement} | {r['max_abs']:.3f} / {r['mean_abs']:.4f} | "
            + ("yes" if r["int8_dot_products"] else "no")
            + " |"
        )
    lines += [f"\n{r['model']}: {r['error']}" for r in records if "error" in r]
    return "\n".join(lines) + "\n"
