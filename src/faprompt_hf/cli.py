# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""The ``faprompt-hf`` command line: predict, train, evaluate, benchmark, export, convert, app and references.

The parsers come from :mod:`faprompt_hf.cli_flags` (the one definition of every flag); this module imports neither
torch nor transformers, so ``--help`` and ``--version`` answer at once. Each command imports the library when it runs
(through :func:`load_package`, which completes the package import that the ``faprompt-hf`` launcher defers).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from . import cli_flags
from .defaults import DEFAULT_ONNX_OPSET, __version__

__all__ = ["build_parser", "load_package", "main"]

logger = logging.getLogger("faprompt_hf")

DEFERRED_INIT_FLAG = "_faprompt_hf_deferred_init"
"""Set on the ``faprompt_hf`` module by the ``faprompt-hf`` launcher while the package's ``__init__`` has not run."""

_VERBOSE = False

_QUIET_LOGGERS = ("onnxscript", "torch.onnx", "torch._dynamo", "torch.export", "onnx_ir", "transformers", "accelerate")


def load_package() -> None:
    """Run ``faprompt_hf/__init__.py`` if the launcher deferred it (registers the model with transformers)."""
    package = sys.modules.get("faprompt_hf")
    if package is not None and getattr(package, DEFERRED_INIT_FLAG, False):
        setattr(package, DEFERRED_INIT_FLAG, False)
        package.__spec__.loader.exec_module(package)
    if not _VERBOSE:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # "Loading weights" bars; --verbose keeps them
    _quiet_third_party(_VERBOSE)  # again: importing torch sets its loggers' levels


def _quiet_third_party(verbose: bool) -> None:
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.ERROR)


def _configure_logging(verbose: bool) -> None:
    """Our messages at INFO; third-party loggers at ERROR unless ``--verbose`` (then everything at DEBUG/INFO)."""
    global _VERBOSE
    _VERBOSE = verbose
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(message)s")
    logging.getLogger("faprompt_hf").setLevel(logging.DEBUG if verbose else logging.INFO)
    _quiet_third_party(verbose)
    if not verbose:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _convert(args: argparse.Namespace) -> None:
    load_package()
    from .checkpoints import record_clip_source
    from .convert_original import convert_original_checkpoint
    from .file_utils import staged_directory
    from .hub import push_folder_to_hub, write_model_card
    from .processing_faprompt import FAPromptProcessor

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


def _folder_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def _export(args: argparse.Namespace) -> None:
    load_package()
    from .file_utils import check_model_reference
    from .image_processing_faprompt import FAPromptImageProcessor
    from .modeling_faprompt import FAPromptModel
    from .onnx.export import export_onnx
    from .onnx.runtime import ONNX_CONFIG_NAME

    check_model_reference(args.model)
    model = FAPromptModel.from_pretrained(args.model)
    try:
        image_processor = FAPromptImageProcessor.from_pretrained(args.model)
    except OSError:
        logger.info("%s has no preprocessor_config.json; using FAPromptImageProcessor defaults.", args.model)
        image_processor = None
    opset = args.opset or DEFAULT_ONNX_OPSET
    if not args.verbose:
        logging.getLogger("faprompt_hf.onnx").setLevel(logging.WARNING)  # the summary below says it
    chatter = io.StringIO()
    quiet = contextlib.nullcontext() if args.verbose else _redirected(chatter)
    with quiet:
        path = export_onnx(
            model,
            args.output,
            image_size=args.image_size,
            opset=opset,
            processor=image_processor,
            quantize=args.quantize,
            normal_reference_class=args.normal_reference_class,
        )
    output = Path(args.output)
    lines = [
        f"Exported {args.model} to {output}/",
        f"  graph: {Path(path).name}, opset {opset}, {args.quantize or 'float32'}, "
        f"{_folder_size(output) / 2**20:.1f} MB in the folder",
    ]
    settings = json.loads((output / ONNX_CONFIG_NAME).read_text(encoding="utf-8"))
    if settings.get("normal_reference_class") is not None:
        lines.append(
            f"  normal references: class {settings['normal_reference_class']!r}, "
            f"{settings['normal_reference_image_count']} image(s), baked into the graph"
        )
    if args.check:
        lines.append(f"  parity with PyTorch: {_onnx_parity(model, output, args.normal_reference_class)}")
    lines.append(f"  run it with: faprompt-hf predict IMAGES --model {output} --output_dir OUT")
    if not args.verbose and chatter.getvalue().strip():
        lines.append(
            f"  ({len(chatter.getvalue().splitlines())} lines of exporter output hidden; --verbose shows them)"
        )
    print("\n".join(lines))  # noqa: T201 (the command's output)


@contextlib.contextmanager
def _redirected(buffer: io.StringIO):
    """Send ``print`` output of third-party code (the ONNX exporter's progress) to ``buffer``."""
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        yield


def _onnx_parity(model, folder: Path, normal_reference_class: str | None = None) -> str:
    """The largest score and map differences between the ONNX graph and PyTorch on one random image."""
    import numpy as np
    import torch

    from .onnx import ONNXAnomalyDetector

    detector = ONNXAnomalyDetector(folder)
    rng = np.random.default_rng(0)
    pixels = rng.standard_normal((1, 3, *detector.image_size)).astype(np.float32)
    scores, maps = detector.run(pixels)
    with torch.no_grad():
        outputs = model(
            pixel_values=torch.from_numpy(pixels).to(model.dtype), normal_reference_class=normal_reference_class
        )
    score_error = float(np.abs(outputs.image_scores.float().numpy() - scores).max())
    map_error = float(np.abs(outputs.anomaly_maps.float().numpy() - maps).max())
    return f"max |score difference| {score_error:.2e}, max |map difference| {map_error:.2e}"


def _train(args: argparse.Namespace) -> None:
    load_package()
    from .train_command import main as train_main

    train_main(args.forwarded, prog="faprompt-hf train")


def _evaluate(args: argparse.Namespace) -> None:
    load_package()
    from .evaluate_command import main as evaluate_main

    evaluate_main(args.forwarded, prog="faprompt-hf evaluate")


def _benchmark(args: argparse.Namespace) -> None:
    load_package()
    from .paper_benchmark import main as benchmark_main

    benchmark_main(args.forwarded)


def _run_and_report(command: str, run: Callable[[], object]) -> None:
    """Print what ``run`` returns, or its ``PredictError`` as ``faprompt-hf COMMAND: error: ...`` with its exit code."""
    from .predict import PredictError

    try:
        summary = run()
    except PredictError as error:
        print(f"faprompt-hf {command}: error: {error}", file=sys.stderr)  # noqa: T201 (the command's output)
        raise SystemExit(error.exit_code) from None
    print(summary)  # noqa: T201 (the command's output)


def _predict(args: argparse.Namespace) -> None:
    from .predict import predict_from_args  # torch only when the model is not an ONNX folder

    _run_and_report("predict", lambda: predict_from_args(args, load_package=load_package))


def _references(args: argparse.Namespace) -> None:
    from .references_command import add_references_from_args

    _run_and_report("references", lambda: add_references_from_args(args, load_package=load_package))


def find_app_script() -> Path | None:
    """``examples/app.py`` of the source checkout this package runs from (an editable install), if there is one."""
    candidate = Path(__file__).resolve().parents[2] / "examples" / "app.py"
    return candidate if candidate.is_file() else None


def _app(args: argparse.Namespace) -> None:
    cli_flags.parse_app_args(args.forwarded, prog="faprompt-hf app")  # a bad flag fails here, before any import
    if importlib.util.find_spec("gradio") is None:
        raise SystemExit(
            "faprompt-hf app: the demo needs gradio, which is not installed: pip install 'faprompt-hf[demo]' "
            '(from a checkout: pip install -e ".[demo]").'
        )
    script = find_app_script()
    if script is None:
        raise SystemExit(
            "faprompt-hf app: the demo app is examples/app.py of the source checkout, which this installation does "
            'not have: clone the repository and pip install -e ".[demo]" there.'
        )
    load_package()
    spec = importlib.util.spec_from_file_location("faprompt_hf_app", script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    module.main(args.forwarded)


def _forwarding_parser(
    commands: argparse._SubParsersAction, name: str, help_text: str, add: Callable[[argparse.ArgumentParser], object]
) -> argparse.ArgumentParser:
    """A subcommand whose arguments its own ``main`` parses (with the same flag definitions); here for ``--help``."""
    parser = commands.add_parser(name, help=help_text, description=help_text)
    add(parser)
    return parser


def _add_verbose(parser: argparse.ArgumentParser) -> None:
    """``--verbose`` after the command too (``faprompt-hf export ... --verbose``)."""
    parser.add_argument(
        "--verbose", action="store_true", default=argparse.SUPPRESS, help="As faprompt-hf --verbose (default: off)."
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``faprompt-hf`` (torch-free: ``--help`` answers without loading the library).

    Returns:
        The parser.
    """
    parser = argparse.ArgumentParser(
        prog="faprompt-hf",
        description="FAPrompt zero-shot anomaly detection: score images, train, evaluate, export. See docs/cli.md.",
    )
    parser.add_argument("--version", action="version", version=f"faprompt-hf {__version__}")
    parser.add_argument(
        "--verbose", action="store_true", help="Show third-party log output and progress chatter (default: off)."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    predict = commands.add_parser(
        "predict",
        help="Score images, folders, globs or a dataset: predictions.csv/.jsonl, and masks, overlays, maps.",
        description="Score images with an FAPrompt model (or its ONNX export) and write predictions.csv, "
        "predictions.jsonl and errors.jsonl to --output_dir, and optionally masks, overlays and raw maps mirroring "
        "the input folders.",
    )
    cli_flags.add_predict_arguments(predict)
    _add_verbose(predict)
    predict.set_defaults(handler=_predict)
    _forwarding_parser(
        commands, "train", "Train FAPrompt's prompts (= examples/train.py).", cli_flags.add_train_arguments
    )
    _forwarding_parser(
        commands,
        "evaluate",
        "Zero-shot evaluation on a dataset (= examples/evaluate.py).",
        cli_flags.add_evaluate_arguments,
    )
    _forwarding_parser(
        commands,
        "benchmark",
        "The paper's cross-dataset table (= examples/benchmark_paper.py).",
        cli_flags.add_benchmark_arguments,
    )
    _forwarding_parser(
        commands,
        "app",
        "Start the Gradio demo (= examples/app.py; needs the demo extra: pip install 'faprompt-hf[demo]').",
        cli_flags.add_app_arguments,
    )
    export = commands.add_parser(
        "export", help="Export a model to ONNX (model.onnx + its processor config and threshold) for onnxruntime."
    )
    cli_flags.add_export_arguments(export)
    _add_verbose(export)
    export.set_defaults(handler=_export)
    convert = commands.add_parser(
        "convert", help="Convert an original FAPrompt checkpoint (epoch_N.pth) into a transformers directory."
    )
    cli_flags.add_convert_arguments(convert)
    _add_verbose(convert)
    convert.set_defaults(handler=_convert)
    references = commands.add_parser(
        "references",
        help="Store a folder of normal images in a saved model's normal-reference bank (few-shot) and save it.",
        description="Load a saved FAPrompt model, store the normal (defect-free) images of --images in its "
        "normal-reference bank as --class_name, and save it to --output_dir in the same layout (compact or "
        "embedded), with its processor. predict and the pipeline then use the references. See docs/few_shot.md.",
    )
    cli_flags.add_references_arguments(references)
    _add_verbose(references)
    references.set_defaults(handler=_references)
    return parser


_FORWARDED = {"train": _train, "evaluate": _evaluate, "benchmark": _benchmark, "app": _app}
"""Commands parsed again by their own ``main`` (the same flag definitions), so that their checks stay in one place."""


def main(argv: Sequence[str] | None = None) -> None:
    """Run ``faprompt-hf``.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    command_index = next((index for index, item in enumerate(argv) if not item.startswith("-")), None)
    if command_index is not None and argv[command_index] in _FORWARDED:
        name, head, rest = argv[command_index], argv[:command_index], argv[command_index + 1 :]
        if any(flag in head for flag in ("-h", "--help", "--version")):
            parser.parse_args(head)
        unknown = [item for item in head if item != "--verbose"]
        if unknown:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        if "-h" in rest or "--help" in rest:
            parser.parse_args([name, "--help"])  # the same flag definitions, without loading torch (or gradio)
        _configure_logging("--verbose" in head)
        _FORWARDED[name](argparse.Namespace(forwarded=rest, verbose="--verbose" in head))
        return
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    args.handler(args)


if __name__ == "__main__":
    main()
