# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Draw docs/images/synthetic_anomalies.png: each synthetic-anomaly kind (columns) on a few normal images (rows).

The anomalies are those ``--synthesize_anomalies`` paints in training (:mod:`faprompt_hf.data.anomaly_synthesis`):
each tile outlines its exact mask in cyan (with a black halo). Object rows use the automatic foreground
(``--foreground_threshold otsu``), outlined in yellow on the normal image; defects stay inside it. The last row is a
grayscale image. Run from the repository root:
``python docs/make_synthetic_anomalies_figure.py [--image-size 160] [--seed 0] [--output ...]``.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402

from faprompt_hf.data.anomaly_synthesis import (  # noqa: E402
    SYNTHETIC_ANOMALY_KINDS,
    foreground_mask,
    synthesize_anomaly,
)
from faprompt_hf.data.synthetic import generate_sample  # noqa: E402

ROWS = (("stripes", False), ("dots", False), ("nut", True), ("capsule", True), ("blobs (grey)", False))


def _normal(name: str, size: int, seed: int) -> np.ndarray:
    domain = name.split(" ")[0]
    image, _ = generate_sample(domain, None, size, seed)
    if "grey" in name:
        grey = ImageOps.autocontrast(Image.fromarray(image).convert("L"), cutoff=1)  # as an 8-bit grey camera
        image = np.repeat(np.asarray(grey)[..., None], 3, axis=-1)
    return image


def draw(output: Path, image_size: int, seed: int) -> None:
    """Render the grid of images x (normal + kinds) and save it.

    Args:
        output: The PNG file to write.
        image_size: Side of each image.
        seed: Seed of the images and the defects.
    """
    columns = ("normal", *SYNTHETIC_ANOMALY_KINDS)
    figure, axes = plt.subplots(len(ROWS), len(columns), figsize=(1.6 * len(columns), 1.6 * len(ROWS)), squeeze=False)
    for row, (name, on_object) in enumerate(ROWS):
        image = _normal(name, image_size, seed + row)
        foreign = _normal(name, image_size, seed + row + 100)  # "another normal image of the dataset"
        support = foreground_mask(image, "otsu") if on_object else None
        for column, kind in enumerate(columns):
            axis = axes[row, column]
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(kind, fontsize=9)
            if column == 0:
                axis.set_ylabel(name + (", otsu" if on_object else ""), fontsize=9)
                axis.imshow(image)
                if support is not None:
                    axis.contour(support, levels=[0.5], colors="black", linewidths=2.0)
                    axis.contour(support, levels=[0.5], colors="yellow", linewidths=0.8, linestyles="dashed")
                continue
            rng = np.random.default_rng([seed, row, column])
            anomalous, mask = synthesize_anomaly(image, kind, rng, foreign=foreign, support=support, where=name)
            axis.imshow(anomalous)
            axis.contour(mask, levels=[0.5], colors="black", linewidths=2.0)
            axis.contour(mask, levels=[0.5], colors="cyan", linewidths=0.8)
    figure.suptitle(
        "faprompt_hf.data.anomaly_synthesis: cyan = exact mask, yellow = automatic foreground (objects)", fontsize=9
    )
    figure.tight_layout(rect=(0, 0, 1, 0.97))
    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=90)
    plt.close(figure)
    rgb = Image.open(buffer).convert("RGB")  # a 256-colour palette keeps the file small
    output.parent.mkdir(parents=True, exist_ok=True)
    rgb.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(output, optimize=True)


def main() -> None:
    """Parse the command line and draw the figure."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "images" / "synthetic_anomalies.png")
    arguments = parser.parse_args()
    draw(arguments.output, arguments.image_size, arguments.seed)


if __name__ == "__main__":
    main()
