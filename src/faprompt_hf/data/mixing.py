# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Training on a mix of datasets: sampled in proportion to their sizes, or equally.

``examples/train.py`` accepts ``--dataset_format`` and ``--dataset_path`` several times (paired in order) and
``--mix_strategy proportional|equal``; :func:`extract_mix_arguments` takes them out of the command line and
:meth:`MixRequest.load` builds the mixed dataset with :func:`mix_datasets`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from datasets import Dataset, concatenate_datasets

from ..defaults import MIX_STRATEGIES

__all__ = ["MIX_STRATEGIES", "MixRequest", "build_mix_request", "extract_mix_arguments", "mix_datasets"]


_NO_PATH_FORMATS = ("synthetic",)


def mix_datasets(datasets: Sequence[Dataset], strategy: str = "proportional", seed: int = 0) -> Dataset:
    """Mix datasets of the one schema into one training set.

    With ``"proportional"`` the datasets are concatenated: each image is seen once per epoch, so a source's share
    of the batches is its share of the images. With ``"equal"`` every source is resampled to the size of the largest
    (whole copies of it, then a seeded draw without replacement for the rest), so each source makes up the same
    share of an epoch, as AdaCLIP samples its training sets. The training loop shuffles the result.

    Args:
        datasets: Two or more datasets in :data:`~faprompt_hf.data.ANOMALY_FEATURES`.
        strategy: ``"proportional"`` or ``"equal"``.
        seed: Seed of the ``"equal"`` draw.

    Returns:
        The mixed dataset: ``sum(len(d))`` rows (proportional) or ``len(datasets) * max(len(d))`` rows (equal).

    Raises:
        ValueError: An unknown strategy, fewer than two datasets, or an empty one.
    """
    if strategy not in MIX_STRATEGIES:
        raise ValueError(f"mix strategy must be one of {MIX_STRATEGIES}, got {strategy!r}.")
    if len(datasets) < 2:
        raise ValueError(f"A mix needs at least two datasets, got {len(datasets)}.")
    for position, dataset in enumerate(datasets):
        if len(dataset) == 0:
            raise ValueError(f"Dataset {position + 1} of the mix is empty.")
    if strategy == "proportional":
        return concatenate_datasets(list(datasets))
    target = max(len(dataset) for dataset in datasets)
    rng = np.random.default_rng(seed)
    parts = []
    for dataset in datasets:
        size = len(dataset)
        repeats, remainder = divmod(target, size)
        indices = np.concatenate(
            [np.tile(np.arange(size), repeats), np.sort(rng.choice(size, remainder, replace=False))]
        )
        parts.append(dataset.select(indices.tolist()))
    return concatenate_datasets(parts)


@dataclass
class MixRequest:
    """A mix asked for on the command line.

    Attributes:
        formats: One ``--dataset_format`` per dataset.
        paths: The matching ``--dataset_path`` (None for ``synthetic``).
        strategy: ``--mix_strategy``.
    """

    formats: list[str]
    paths: list[str | None]
    strategy: str

    def load(self, split: str, seed: int, image_size: int | None = None) -> tuple[Dataset, str]:
        """Load every dataset of the mix and mix them.

        Args:
            split: The split to load from each (``"test"`` in the reference protocol).
            seed: Seed of the ``equal`` draw (and of synthetic data).
            image_size: Side of synthetic images (default 224).

        Returns:
            ``(dataset, name)``, the name listing the sources and the strategy.
        """
        from .dispatch import load_dataset_by_format

        parts = []
        for dataset_format, path in zip(self.formats, self.paths, strict=True):
            kwargs = {"seed": seed, "image_size": max(64, image_size or 224)} if dataset_format == "synthetic" else {}
            parts.append(load_dataset_by_format(dataset_format, path, split, **kwargs))
        sources = ", ".join(
            f"{fmt}:{path}" if path else fmt for fmt, path in zip(self.formats, self.paths, strict=True)
        )
        return mix_datasets(parts, self.strategy, seed), f"mix ({self.strategy}) of {sources}"


def _take(argv: list[str], flag: str) -> tuple[list[str], list[str]]:
    """Remove every ``flag VALUE`` / ``flag=VALUE`` from ``argv``; return the rest and the values in order."""
    rest, values, index = [], [], 0
    while index < len(argv):
        item = argv[index]
        if item == flag:
            if index + 1 >= len(argv):
                raise ValueError(f"{flag} needs a value.")
            values.append(argv[index + 1])
            index += 2
            continue
        if item.startswith(flag + "="):
            values.append(item.split("=", 1)[1])
        else:
            rest.append(item)
        index += 1
    return rest, values


def build_mix_request(
    formats: Sequence[str],
    paths: Sequence[str],
    strategy: str | None = None,
    single_dataset_flags: Sequence[str] = (),
) -> MixRequest | None:
    """The mix that repeated ``--dataset_format``/``--dataset_path`` flags ask for, or None for one dataset.

    The formats are paired in order with the paths (``synthetic`` takes none).

    Args:
        formats: Every ``--dataset_format`` value, in order.
        paths: Every ``--dataset_path`` value, in order.
        strategy: ``--mix_strategy`` (None: ``proportional``).
        single_dataset_flags: Flags given that apply to one dataset only (``--classes``, ...), refused with a mix.

    Returns:
        The :class:`MixRequest`, or None when at most one format is given.

    Raises:
        ValueError: ``--mix_strategy`` or several ``--dataset_path`` without several datasets, an unknown strategy,
            paths that do not pair with the formats, or a one-dataset flag with a mix.
    """
    if len(formats) <= 1:
        if strategy is not None:
            raise ValueError(
                "--mix_strategy mixes several datasets: give --dataset_format (and --dataset_path) once per dataset, "
                "e.g. --dataset_format mvtec --dataset_path /data/mvtec --dataset_format visa --dataset_path "
                "/data/visa --mix_strategy equal."
            )
        if len(paths) > 1:
            raise ValueError(
                f"--dataset_path given {len(paths)} times with one --dataset_format: give --dataset_format once per "
                "dataset to train on a mix."
            )
        return None
    strategy = strategy or "proportional"
    if strategy not in MIX_STRATEGIES:
        raise ValueError(f"--mix_strategy must be one of {', '.join(MIX_STRATEGIES)}, got {strategy!r}.")
    needing = [fmt for fmt in formats if fmt not in _NO_PATH_FORMATS]
    if len(paths) != len(needing):
        raise ValueError(
            f"A mix of {len(formats)} datasets ({', '.join(formats)}) needs one --dataset_path per format other than "
            f"synthetic, in the same order: {len(needing)} expected, {len(paths)} given."
        )
    for flag in single_dataset_flags:
        raise ValueError(f"{flag} applies to one dataset; it cannot be combined with a mix of datasets.")
    path_iter = iter(paths)
    paired: list[str | None] = [None if fmt in _NO_PATH_FORMATS else next(path_iter) for fmt in formats]
    return MixRequest(list(formats), paired, strategy)


def extract_mix_arguments(argv: Sequence[str]) -> tuple[list[str], MixRequest | None]:
    """Take a mix of datasets out of a training command line.

    The parser of ``faprompt-hf train`` reads the mix flags itself; this is for callers that hold a raw command line.

    Args:
        argv: The command-line arguments.

    Returns:
        ``(argv, MixRequest or None)``: the command line with only the first format and path kept (unchanged without
        a mix), and the mix.

    Raises:
        ValueError: As :func:`build_mix_request`; also ``--mix_strategy`` given more than once.
    """
    rest, formats = _take(list(argv), "--dataset_format")
    rest, paths = _take(rest, "--dataset_path")
    rest, strategies = _take(rest, "--mix_strategy")
    if len(strategies) > 1:
        raise ValueError(f"--mix_strategy given {len(strategies)} times; give it once.")
    single = [
        flag
        for flag in ("--classes", "--dataset_kwargs", "--column_mapping", "--dataset", "--synthetic_domains")
        if any(item == flag or item.startswith(flag + "=") for item in rest)
    ]
    if len(formats) <= 1 and len(paths) <= 1:
        build_mix_request(formats, paths, strategies[0] if strategies else None)
        return list(argv), None
    mix = build_mix_request(formats, paths, strategies[0] if strategies else None, single)
    if mix is None:
        return list(argv), None
    first = ["--dataset_format", mix.formats[0]] + (
        [] if mix.paths[0] is None else ["--dataset_path", os.fspath(mix.paths[0])]
    )
    return rest + first, mix
