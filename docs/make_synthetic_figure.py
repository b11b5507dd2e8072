# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Draw docs/images/synthetic_domains.png: every synthetic domain (rows) with each defect type (columns).

Each anomalous tile outlines its exact mask in cyan (with a black halo). Run from the repository root:
``python docs/make_synthetic_figure.py [--image-size 160] [--seed 0] [--output docs/images/synthetic_domains.png]``.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

from faprompt_hf.data.synthetic import DEFECT_TYPES, DOMAINS, defect_types_for, generate_sample  # noqa: E402


def draw(output: Path, image_size: int, seed: int) -> None:
    """Render the grid of domains x (normal + defect types) and save it.

    Args:
        output: The PNG file to write.
        image_size: Side of each synthetic image.
        seed: Seed of every tile (tiles of a row share their clean image).
    """
    columns = ("normal", *DEFECT_TYPES)
    figure, axes = plt.subplots(
        len(DOMAINS), len(columns), figsize=(1.45 * len(columns), 1.45 * len(DOMAINS)), squeeze=False
    )
    for row, domain in enumerate(DOMAINS):
        for column, kind in enumerate(columns):
            axis = axes[row, column]
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(kind, fontsize=9)
            if column == 0:
                axis.set_ylabel(domain, fontsize=9)
            defect = None if kind == "normal" else kind
            if defect is not None and defect not in defect_types_for(domain):
                axis.set_facecolor("0.95")
                axis.text(0.5, 0.5, "n/a", ha="center", va="center", fontsize=8, color="0.5", transform=axis.transAxes)
                continue
            image, mask = generate_sample(domain, defect, image_size, seed + row)
            axis.imshow(image)
            if mask.any():
                axis.contour(mask, levels=[0.5], colors="black", linewidths=2.0)
                axis.contour(mask, levels=[0.5], colors="cyan", linewidths=0.8)
    figure.suptitle("faprompt_hf.data.synthetic: domains (rows) x defect types; cyan = exact mask outline", fontsize=9)
    figure.tight_layout(rect=(0, 0, 1, 0.98))
    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=100)
    plt.close(figure)
    # A 256-colour palette keeps the file small (the images' grain compresses badly) with no visible loss.
    rgb = Image.open(buffer).convert("RGB")
    output.parent.mkdir(parents=True, exist_ok=True)
    rgb.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(output, optimize=True)


def main() -> None:
    """Parse the command line and draw the figure."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "images" / "synthetic_domains.png")
    arguments = parser.parse_args()
    draw(arguments.output, arguments.image_size, arguments.seed)


if __name__ == "__main__":
    main()
