# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Parsing and checking the command-line flags that ``examples/train.py`` and ``examples/evaluate.py`` share.

Both scripts spell a shared concept the same way (the canonical name first, older spellings kept as aliases):

============================  ==============================================  =======================================
canonical flag                aliases                                         value
============================  ==============================================  =======================================
``--batch_size``              ``--per_device_train_batch_size`` (train.py),   images per batch and process
                              ``--per_device_eval_batch_size`` (evaluate.py)
``--use_cpu``                 ``--cpu``                                       run on the CPU even when a GPU is present
``--dataloader_num_workers``  ``--num_workers`` (evaluate.py)                 data-loader workers per process
``--column_mapping``                                                          JSON object or ``ours=theirs,...``
``--dataset_kwargs``                                                          JSON object
``--config_overrides``                                                        JSON object (train.py)
============================  ==============================================  =======================================

Every check raises ``ValueError`` (or ``argparse.ArgumentTypeError`` for ``type=`` functions) with a message that
names the flag and shows a valid example, so that the scripts report it as an argparse error before doing any work.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from typing import Any

__all__ = [
    "FLAG_EXAMPLES",
    "argparse_type",
    "non_negative_float",
    "parse_column_mapping",
    "parse_json_object",
    "positive_int",
]

FLAG_EXAMPLES: dict[str, str] = {
    "--column_mapping": '\'{"image": "img", "mask": "gt"}\' or image=img,mask=gt',
    "--dataset_kwargs": '\'{"split_csv": "split_csv/1cls.csv"}\'',
    "--config_overrides": "'{\"num_abnormal_prompts\": 5}'",
}
"""A valid value of each structured flag, shown in its error messages."""


def parse_json_object(text: str, flag: str) -> dict[str, Any]:
    """Parse a flag's value as a JSON object.

    Args:
        text: The flag's value.
        flag: The flag's name (``"--dataset_kwargs"``), for the message.

    Returns:
        The object as a dict.

    Raises:
        ValueError: Malformed JSON, or JSON that is not an object; the message names the flag and shows an example.
    """
    example = FLAG_EXAMPLES.get(flag, "'{\"key\": 1}'")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{flag} is not valid JSON ({error.msg} at character {error.pos} of {text!r}); give a JSON object, "
            f"e.g. {flag} {example} (single quotes around it in a shell)."
        ) from None
    if not isinstance(value, dict):
        raise ValueError(f"{flag} must be a JSON object, got {type(value).__name__} {text!r}; e.g. {flag} {example}.")
    return value


def parse_column_mapping(text: str) -> dict[str, str]:
    """Parse ``--column_mapping``: a JSON object or ``ours=theirs`` pairs separated by commas.

    Args:
        text: The flag's value.

    Returns:
        Our column name -> the dataset's column name.

    Raises:
        ValueError: Neither form; the message names the flag and shows both forms.
    """
    if text.lstrip().startswith("{"):
        mapping = parse_json_object(text, "--column_mapping")
    else:
        pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
        if not pairs or any(len(pair) != 2 or not pair[0].strip() or not pair[1].strip() for pair in pairs):
            raise ValueError(
                f"--column_mapping expects ours=theirs pairs or a JSON object, got {text!r}; e.g. --column_mapping "
                f"{FLAG_EXAMPLES['--column_mapping']}."
            )
        mapping = {ours.strip(): theirs.strip() for ours, theirs in pairs}
    if not all(isinstance(value, str) for value in mapping.values()):
        raise ValueError(f"--column_mapping values must be column names (strings), got {text!r}.")
    return {str(key): value for key, value in mapping.items()}


def argparse_type(check: Callable[[str], Any], name: str) -> Callable[[str], Any]:
    """An argparse ``type=`` function that reports ``check``'s ``ValueError`` as an argparse (usage) error.

    Args:
        check: Parses the flag's text; raises ``ValueError`` with the message to show.
        name: What the value is (argparse shows it when ``check`` fails in an unexpected way).

    Returns:
        The function to pass as ``type=``.
    """

    def parse(text: str) -> Any:
        try:
            return check(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse.__name__ = name  # argparse names the type in its messages
    return parse


def non_negative_float(flag: str) -> Callable[[str], float]:
    """An argparse type: a finite number >= 0 (NaN, infinities and negative values are refused, naming ``flag``)."""

    def check(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{flag} must be a number >= 0, got {text!r}.") from None
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{flag} must be a finite number >= 0, got {text!r} (0 turns it off).")
        return value

    return argparse_type(check, "non-negative number")


def positive_int(flag: str, minimum: int = 1) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum`` (1 by default), naming ``flag`` when refused."""

    def check(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{flag} must be an integer >= {minimum}, got {text!r}.") from None
        if value < minimum:
            raise ValueError(f"{flag} must be an integer >= {minimum}, got {value}.")
        return value

    return argparse_type(check, f"integer >= {minimum}")
