# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""The ``faprompt-hf`` command line."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence

from . import DEFAULT_CLIP
from .configuration_faprompt import DEFAULT_IMAGE_SIZE
from .convert_original import convert_original_checkpoint
from .file_utils import staged_directory
from .hub import push_folder_to_hub, record_clip_source, write_model_card
from .image_processing_faprompt import FAPromptImageProcessor
from .modeling_faprompt import FAPromptModel
from .onnx.export import export_onnx
from .processing_faprompt import FAPromptProcessor

__all__ = ["main"]

logger = logging.getLogger("faprompt_hf")


def _convert(args: argparse.Namespace) -> None:
    overrides = {"image_size": args.image_size, "gaussian_sigma": args.gaussian_sigma}
    model = convert_original_checkpoint(
        args.checkpoint, args.clip, **{key: value for key, value in overrides.items() if value is not None}
    )
    if not os.path.isfile(args.clip):  # a transformers CLIP (hub id or folder): a compact save can name it
        record_clip_source(model, args.clip)
    processor = FAPromptProcessor.from_model_config(model.config)
    with staged_directory(args.output) as staging:
        processor.save_pretrained(staging)
    model.save_pretrained(args.output, include_clip=True if args.embed_clip else None)
    write_model_card(args.output, repo_id=args.push_to_hub)
    logger.info("Wrote %s (load it with FAPromptModel.from_pretrained and AutoProcessor.from_pretrained).", args.output)
    if args.push_to_hub:
        logger.info("Pushed: %s", push_folder_to_hub(args.output, args.push_to_hub))


def _export(args: argparse.Namespace) -> None:
    model = FAPromptModel.from_pretrained(args.model)
    try:
        image_processor = FAPromptImageProcessor.from_pretrained(args.model)
    except OSError:
        logger.info("%s has no preprocessor_config.json; using FAPromptImageProcessor defaults.", args.model)
        image_processor = None
    path = export_onnx(model, args.output, image_size=args.image_size, opset=args.opset, processor=image_processor)
    logger.info("Wrote %s (run it with faprompt_hf.onnx.ONNXAnomalyDetector(%r)).", path, args.output)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``faprompt-hf``."""
    parser = argparse.ArgumentParser(prog="faprompt-hf", description="FAPrompt zero-shot anomaly detection tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    convert = commands.add_parser(
        "convert", help="Convert an original FAPrompt checkpoint (epoch_N.pth) into a transformers directory."
    )
    convert.add_argument("--checkpoint", required=True, help="The original epoch_N.pth ({'prompt_learner': ...}).")
    convert.add_argument(
        "--clip",
        default=DEFAULT_CLIP,
        help="The CLIP it was trained on: an OpenAI-format state-dict file, a transformers CLIP id or directory "
        f"(default {DEFAULT_CLIP}, the same weights as OpenAI's ViT-L-14-336px.pt).",
    )
    convert.add_argument("--output", required=True, help="Output directory.")
    convert.add_argument(
        "--image_size",
        type=int,
        default=None,
        help=f"Input side in pixels (default: {DEFAULT_IMAGE_SIZE}, the original evaluation's).",
    )
    convert.add_argument(
        "--gaussian_sigma",
        type=float,
        default=None,
        help="Anomaly-map smoothing in pixels, 0 turns it off (default: 10).",
    )
    convert.add_argument("--push_to_hub", default=None, metavar="REPO_ID", help="Also push to this hub repository.")
    convert.add_argument(
        "--embed_clip",
        action="store_true",
        help="Include the CLIP's weights (about 1.7 GB for ViT-L/14@336) for fully offline use. By default a CLIP "
        "given as a hub id is only named (with its revision and fingerprint) and downloaded on first load.",
    )
    convert.set_defaults(handler=_convert)
    export = commands.add_parser(
        "export", help="Export a model to ONNX (model.onnx + its processor config and threshold) for onnxruntime."
    )
    export.add_argument("--model", required=True, help="A saved FAPrompt model: local directory or hub id.")
    export.add_argument("--output", required=True, help="Output directory.")
    export.add_argument("--opset", type=int, default=None, help="ONNX opset (18 or newer; default: the exporter's).")
    export.add_argument(
        "--image_size",
        type=int,
        default=None,
        help="Input side in pixels, a multiple of the patch size (default: the saved processor's, else the config's).",
    )
    export.set_defaults(handler=_export)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Run ``faprompt-hf``.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)
    args.handler(args)


if __name__ == "__main__":
    main()
