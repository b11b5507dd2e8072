# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""Configuration of FAPrompt: a frozen CLIP plus the hyper-parameters of the method (method §1-§6)."""

from __future__ import annotations

import difflib
import math
import warnings
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
from huggingface_hub.dataclasses import strict
from huggingface_hub.errors import StrictDataclassClassValidationError
from transformers import CLIPConfig, PreTrainedConfig

from .defaults import DEFAULT_IMAGE_SIZE
from .inference_utils import check_threshold

__all__ = [
    "DEFAULT_IMAGE_SIZE",
    "FAPromptConfig",
    "FAPromptConfigError",
    "PRIOR_PATCH_SELECTIONS",
    "clip_vit_large_patch14_336_config",
]

# DEFAULT_IMAGE_SIZE (imported from .defaults, torch-free for the CLI help): the reference input side S in pixels
# (the released code's and the paper's), ``FAPromptConfig.image_size``'s default. Everything else that needs a size
# takes the model's ``config.image_size``.

#: How the data-dependent prior picks its M patches (method §4).
PRIOR_PATCH_SELECTIONS = ("top_m", "first_m")

# Token ids of OpenAI's CLIP tokenizer: <|startoftext|>, <|endoftext|>, "N", "A", "damaged", "object", ".".
_SOT, _EOT, _TOK_N, _TOK_A, _TOK_DAMAGED, _TOK_OBJECT, _TOK_PERIOD = 49406, 49407, 333, 320, 13568, 14115, 269

# Keyword arguments that transformers itself passes to configs (on load, on save, through from_pretrained).
_FRAMEWORK_KWARGS = frozenset(
    {
        "model_type",
        "transformers_version",
        "name_or_path",
        "torch_dtype",
        "dtype",
        "attn_implementation",
        "use_cache",
        "tie_word_embeddings",
        "pad_token_id",
        "bos_token_id",
        "eos_token_id",
        "output_attentions",
        "tokenizer_class",
        "prefix",
        "task_specific_params",
        "finetuning_task",
        "num_labels",
        "auto_map",
        "custom_pipelines",
    }
)

# Loaded as the installed package (True), or as the remote-code copy that transformers imports from a model folder
# (False). The package registers the "anomaly-detection" pipeline itself, so its config drops a folder's
# ``custom_pipelines`` (with them, transformers would demand ``trust_remote_code`` even where the package is
# installed); the remote-code copy keeps them, since they are how ``pipeline(..., trust_remote_code=True)`` finds the
# pipeline class.
_LOADED_FROM_PACKAGE = __name__.partition(".")[0] == "faprompt_hf"


def clip_vit_large_patch14_336_config() -> CLIPConfig:
    """The architecture of ``openai/clip-vit-large-patch14-336``, the reference backbone (method §1).

    Returns:
        A ``CLIPConfig`` with a 24-block, 1024-wide ViT-L/14 at 336 px and a 12-block, 768-wide text tower.
    """
    return CLIPConfig(
        text_config={
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_attention_heads": 12,
            "num_hidden_layers": 12,
            "projection_dim": 768,
        },
        vision_config={
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_attention_heads": 16,
            "num_hidden_layers": 24,
            "image_size": 336,
            "patch_size": 14,
            "projection_dim": 768,
        },
        projection_dim=768,
    )


def _is_number(value: Any) -> bool:
    """A Python int or float (what JSON stores), not a bool, a string or a numpy scalar other than float64."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _type_name(value: Any) -> str:
    """The value's type, with a hint for numpy scalars (which the config's JSON cannot store)."""
    name = type(value).__name__
    return f"{name}; convert numpy scalars with int() or float()" if isinstance(value, np.generic) else name


def _number_rule(
    minimum: float, inclusive: bool = True, maximum: float | None = None, integer: bool = False
) -> Callable[[str, Any], None]:
    """A field check: a finite number (an int when ``integer``) at least (or above) ``minimum``, at most ``maximum``."""
    bound = f">= {minimum}" if inclusive else f"> {minimum}"
    described = f"an int {bound}" if integer else f"a finite number {bound}"
    if maximum is not None:
        described += f" and <= {maximum}"

    def check(name: str, value: Any) -> None:
        if integer and not (isinstance(value, int) and not isinstance(value, bool)):
            raise TypeError(f"FAPromptConfig.{name} must be an int, got {value!r} ({_type_name(value)}).")
        if not _is_number(value):
            raise TypeError(f"FAPromptConfig.{name} must be a number, got {value!r} ({_type_name(value)}).")
        number = float(value)
        below = number < minimum if inclusive else number <= minimum
        if not math.isfinite(number) or below or (maximum is not None and number > maximum):
            raise ValueError(f"FAPromptConfig.{name} must be {described}, got {value!r}.")

    return check


def _check_anomaly_threshold(name: str, value: Any) -> None:
    """None (uncalibrated) or a threshold by the one rule (``inference_utils.THRESHOLD_RANGE``)."""
    if value is None:
        return
    if not _is_number(value):
        raise TypeError(f"FAPromptConfig.{name} must be a number, got {value!r} ({_type_name(value)}).")
    check_threshold(value, f"FAPromptConfig.{name}")


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"FAPromptConfig.{name} must be True or False, got {value!r} ({_type_name(value)}).")


def _check_token_ids(name: str, value: Any) -> None:
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in value
    ):
        raise TypeError(f"FAPromptConfig.{name} must be a list of token ids (ints >= 0), got {value!r}.")


def _check_patch_selection(name: str, value: Any) -> None:
    if value not in PRIOR_PATCH_SELECTIONS:
        raise ValueError(f"FAPromptConfig.{name} must be one of {PRIOR_PATCH_SELECTIONS}, got {value!r}.")


def _check_class_names(name: str, value: Any) -> None:
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) and item for item in value):
        raise TypeError(f"FAPromptConfig.{name} must be a list of non-empty class names (str), got {value!r}.")
    repeated = sorted({item for item in value if list(value).count(item) > 1})
    if repeated:
        raise ValueError(f"FAPromptConfig.{name} must name each class once, got {value!r} ({repeated} repeated).")


def _check_counts(name: str, value: Any) -> None:
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in value
    ):
        raise TypeError(f"FAPromptConfig.{name} must be a list of counts (ints > 0), got {value!r}.")


_positive_int = _number_rule(1, integer=True)
_non_negative_int = _number_rule(0, integer=True)
_positive_number = _number_rule(0.0, inclusive=False)
_non_negative_number = _number_rule(0.0)
_unit_interval = _number_rule(0.0, maximum=1.0)

#: The rule of each field, checked at construction and on every assignment (``config.temperature = ...``); the
#: rules that tie fields together (deep prompts within the context, sizes against the CLIP backbone) are checked
#: by ``validate_architecture`` at construction and by ``config.validate()``.
_FIELD_RULES: dict[str, Callable[[str, Any], None]] = {
    "normal_context_length": _positive_int,
    "abnormal_context_length": _positive_int,
    "num_abnormal_prompts": _positive_int,
    "prior_num_patches": _positive_int,
    "prior_hidden_reduction": _positive_int,
    "prior_patch_selection": _check_patch_selection,
    "deep_prompt_depth": _positive_int,
    "deep_prompt_length": _non_negative_int,
    "round_deep_prompts_to_float16": _check_bool,
    "num_vv_blocks": _non_negative_int,
    "temperature": _positive_number,
    "image_size": _positive_int,
    "gaussian_sigma": _non_negative_number,
    "gaussian_truncate": _non_negative_number,
    "focal_gamma": _non_negative_number,
    "prior_map_loss_weight": _non_negative_number,
    "global_loss_weight": _non_negative_number,
    "orthogonality_loss_weight": _non_negative_number,
    "prior_loss_weight": _non_negative_number,
    "bos_token_id": _non_negative_int,
    "eos_token_id": _non_negative_int,
    "normal_placeholder_token_id": _non_negative_int,
    "abnormal_placeholder_token_id": _non_negative_int,
    "normal_suffix_token_ids": _check_token_ids,
    "abnormal_suffix_token_ids": _check_token_ids,
    "prompt_init_std": _non_negative_number,
    "initializer_range": _non_negative_number,
    "anomaly_threshold": _check_anomaly_threshold,
    "reference_map_weight": _unit_interval,
    "reference_score_weight": _unit_interval,
    "normal_reference_classes": _check_class_names,
    "normal_reference_image_counts": _check_counts,
    "normal_reference_patch_counts": _check_counts,
}


def _check_clip_config_keys(clip_config: dict) -> None:
    """Refuse a ``clip_config`` dict that describes no CLIP tower and holds keys ``CLIPConfig`` does not know.

    ``CLIPConfig.from_dict({"foo": 1})`` would build the default ViT-B/32 and keep ``foo`` as an attribute, so the
    error would blame a field that does not fit that CLIP instead of naming ``foo``.

    Raises:
        ValueError: Names the unknown keys (with the close known ones) and how to pass a CLIP configuration.
    """
    if any(key in clip_config for key in ("text_config", "vision_config", "text_config_dict", "vision_config_dict")):
        return
    known = set(CLIPConfig().to_dict())
    unknown = sorted(key for key in clip_config if not str(key).startswith("_") and key not in known)
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(
            f"FAPromptConfig.clip_config has no text_config or vision_config and unknown key(s) {', '.join(hints)}: "
            "pass a CLIPConfig or its to_dict() (e.g. CLIPConfig.from_pretrained('openai/clip-vit-large-patch14-336')"
            ".to_dict()), with the towers' sizes under text_config and vision_config."
        )


@strict
class FAPromptConfig(PreTrainedConfig):
    r"""Configuration of a [`FAPromptModel`].

    Defaults are those of the released implementation (``docs/method.md``); ``clip_config`` defaults to the
    architecture of ``openai/clip-vit-large-patch14-336``. Unknown keyword arguments raise ``TypeError`` (a misspelt
    hyper-parameter must not be stored silently).

    Args:
        clip_config: The frozen CLIP backbone (a ``CLIPConfig`` or its dict).
        normal_context_length: E, learnable tokens of the normal context, shared by every prompt.
        abnormal_context_length: E', learnable tokens of each abnormal context.
        num_abnormal_prompts: K, number of abnormal prompts.
        prior_num_patches: M, patches fed to the abnormality prior.
        prior_hidden_reduction: The prior's hidden width is ``M * D / prior_hidden_reduction``.
        prior_patch_selection: ``"top_m"`` (the paper: the M most abnormal patches by static score, descending) or
            ``"first_m"`` (the released code's indexing slip: patches 0..M-1 in row-major order; converted original
            checkpoints use it).
        deep_prompt_depth: Text blocks that see learnable deep prompts, counting the input block (so
            ``depth - 1`` deep prompt tensors are learned); 1 disables deep prompts.
        deep_prompt_length: Tokens (positions 1..length) that each deep prompt replaces.
        round_deep_prompts_to_float16: Round the deep prompts to float16 where they are inserted, as the released
            code does (its checkpoints' outputs depend on it); converted original checkpoints set it.
        num_vv_blocks: Last vision blocks that also run the V-V attention path; 0 disables it.
        temperature: Fixed softmax temperature of every similarity (CLIP's ``logit_scale`` is not used).
        image_size: Default input side S (any multiple of the patch size works at run time).
        gaussian_sigma: Sigma, in pixels, of the Gaussian that smooths anomaly maps; 0 turns smoothing off.
        gaussian_truncate: Kernel radius in sigmas (scipy's ``truncate``).
        focal_gamma: Gamma of the pixel and image focal losses.
        prior_map_loss_weight: Weight of the prior-prompt terms in the local loss.
        global_loss_weight: Weight of the image-level loss.
        orthogonality_loss_weight: Weight of the abnormal prompts' pairwise-cosine loss.
        prior_loss_weight: Weight of the prior's penalty on normal images.
        bos_token_id: Start-of-text token id.
        eos_token_id: End-of-text token id (the prompt feature is read at its position).
        normal_placeholder_token_id: Token whose embedding the normal context replaces ("N").
        abnormal_placeholder_token_id: Token whose embedding the abnormal contexts replace ("A").
        normal_suffix_token_ids: Fixed tokens after the normal context ("object .").
        abnormal_suffix_token_ids: Fixed tokens after the abnormal context ("damaged object .").
        prompt_init_std: Standard deviation of the learnable prompts at initialisation.
        initializer_range: Standard deviation used by transformers' default initialisation.
        anomaly_threshold: Optional image-score threshold used by the pipeline's ``is_anomalous``.
        reference_map_weight: With normal references (``docs/few_shot.md``), the weight w of the reference map in
            the anomaly map: ``(1 - w) * text map + w * reference map``.
        reference_score_weight: With normal references, the weight of the reference map's maximum in the image
            score: ``(1 - w) * FAPrompt's score + w * max(reference map)``.
        normal_reference_classes: Names of the classes in the normal-reference bank, in bank order (written by
            ``FAPromptModel.set_normal_references``; empty: zero-shot).
        normal_reference_image_counts: Reference images of each class in the bank.
        normal_reference_patch_counts: Patch features of each class in the bank (rows of
            ``normal_references.features``).
        clip_name_or_path: Where the CLIP the prompts were trained on comes from: a hub id or a local directory
            (recorded by ``FAPromptModel.from_clip``; a compact checkpoint loads its CLIP from there).
        clip_revision: The hub revision (commit) of that CLIP, when known.
        clip_fingerprint: Fingerprint of that CLIP's weights (:func:`faprompt_hf.hub.clip_fingerprint`); loading a
            compact checkpoint refuses a CLIP whose fingerprint differs.
        weights_include_clip: What the saved weights hold, written by ``save_pretrained``: True (embedded: the CLIP's
            tensors too), False (compact: ``prompt_learner.*`` only), None (not saved yet, or an older save).
            Loading decides embedded or compact from it and refuses weight files that hold the other kind.
    """

    model_type: ClassVar[str] = "faprompt"
    sub_configs_defaults: ClassVar[dict[str, type]] = {"clip_config": CLIPConfig}

    clip_config: dict | CLIPConfig | None = None
    normal_context_length: int = 5
    abnormal_context_length: int = 2
    num_abnormal_prompts: int = 10
    prior_num_patches: int = 10
    prior_hidden_reduction: int = 16
    prior_patch_selection: str = "top_m"
    deep_prompt_depth: int = 9
    deep_prompt_length: int = 4
    round_deep_prompts_to_float16: bool = False
    num_vv_blocks: int = 19
    temperature: float | int = 0.07
    image_size: int = DEFAULT_IMAGE_SIZE
    gaussian_sigma: float | int = 10.0
    gaussian_truncate: float | int = 4.0
    focal_gamma: float | int = 2.0
    prior_map_loss_weight: float | int = 0.5
    global_loss_weight: float | int = 1.0
    orthogonality_loss_weight: float | int = 0.1
    prior_loss_weight: float | int = 1.0
    bos_token_id: int = _SOT
    eos_token_id: int = _EOT
    normal_placeholder_token_id: int = _TOK_N
    abnormal_placeholder_token_id: int = _TOK_A
    normal_suffix_token_ids: list[int] | tuple[int, ...] = (_TOK_OBJECT, _TOK_PERIOD)
    abnormal_suffix_token_ids: list[int] | tuple[int, ...] = (_TOK_DAMAGED, _TOK_OBJECT, _TOK_PERIOD)
    prompt_init_std: float | int = 0.02
    initializer_range: float | int = 0.02
    anomaly_threshold: float | int | None = None
    reference_map_weight: float | int = 0.5
    reference_score_weight: float | int = 0.5
    normal_reference_classes: list[str] | tuple[str, ...] = ()
    normal_reference_image_counts: list[int] | tuple[int, ...] = ()
    normal_reference_patch_counts: list[int] | tuple[int, ...] = ()
    clip_name_or_path: str | None = None
    clip_revision: str | None = None
    clip_fingerprint: str | None = None
    weights_include_clip: bool | None = None

    def __setattr__(self, name: str, value: Any) -> None:
        """Check a field's value against its rule (``_FIELD_RULES``) before storing it, at construction and after.

        Raises:
            TypeError: A value of the wrong type (a string where a number belongs, a bool where an int belongs).
            ValueError: A value outside the field's range (NaN, inf, zero or negative where they make no sense).
        """
        if name in _FIELD_RULES:
            self._check_field(name, value)
        elif (
            not name.startswith("_")
            and name not in self.__dataclass_fields__
            and name not in _FRAMEWORK_KWARGS
            and "weights_include_clip" in self.__dict__  # (the last field: construction has set them all)
            and name not in self.__dict__
            and not hasattr(type(self), name)
        ):
            self._warn_unknown_attribute(name)
        super().__setattr__(name, value)

    def _warn_unknown_attribute(self, name: str) -> None:
        """Warn when a new attribute's name is close to a field's (``config.gausian_sigma = 3``): a likely typo."""
        names = [field for field in self.__dataclass_fields__ if not field.startswith("_")]
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.8)
        if close:
            warnings.warn(
                f"FAPromptConfig has no field {name!r}: did you mean {close[0]!r}? The value is stored as an extra "
                f"attribute that nothing reads; set config.{close[0]} instead.",
                UserWarning,
                stacklevel=3,
            )

    def _check_field(self, name: str, value: Any) -> None:
        """Apply the rule of field ``name`` to ``value``; the error names the field, the value and the default."""
        try:
            _FIELD_RULES[name](name, value)
        except (TypeError, ValueError) as error:
            default = self.__dataclass_fields__[name].default
            raise type(error)(f"{error} Pass e.g. the default {name}={default!r}.") from None

    def __post_init__(self, **kwargs: Any) -> None:
        """Fill the CLIP default, normalise list fields and refuse unknown keyword arguments."""
        unknown = sorted(k for k in kwargs if not k.startswith("_") and k not in _FRAMEWORK_KWARGS)
        if unknown:
            names = [name for name in self.__dataclass_fields__ if not name.startswith("_")]
            hints = []
            for key in unknown:
                close = difflib.get_close_matches(key, names, n=1)
                hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise TypeError(f"FAPromptConfig got unknown field(s): {', '.join(hints)}.")
        if _LOADED_FROM_PACKAGE:
            kwargs.pop("custom_pipelines", None)
        if self.clip_config is None:
            self.clip_config = clip_vit_large_patch14_336_config()
        elif isinstance(self.clip_config, dict):
            _check_clip_config_keys(self.clip_config)  # transformers < 5.24 leaves nested dicts as they are
            self.clip_config = CLIPConfig.from_dict(self.clip_config)
        self.normal_suffix_token_ids = [int(i) for i in self.normal_suffix_token_ids]
        self.abnormal_suffix_token_ids = [int(i) for i in self.abnormal_suffix_token_ids]
        self.normal_reference_classes = list(self.normal_reference_classes)
        self.normal_reference_image_counts = list(self.normal_reference_image_counts)
        self.normal_reference_patch_counts = list(self.normal_reference_patch_counts)
        super().__post_init__(**kwargs)

    def validate_architecture(self) -> None:
        """Check the hyper-parameters against each other and against the CLIP backbone."""
        for name, field in self.__dataclass_fields__.items():
            value = getattr(self, name, None)
            if field.type in ("int", int) and not (isinstance(value, int) and not isinstance(value, bool)):
                raise TypeError(f"FAPromptConfig.{name} must be an int, got {value!r}.")
        for name in _FIELD_RULES:  # again, for values set behind __setattr__'s back (e.g. through __dict__)
            self._check_field(name, getattr(self, name))
        if self.deep_prompt_length > self.normal_context_length:
            raise ValueError(
                f"deep_prompt_length ({self.deep_prompt_length}) must not exceed normal_context_length "
                f"({self.normal_context_length}): deep prompts replace positions 1..length, inside the normal context."
            )
        lengths = {
            len(self.normal_reference_classes),
            len(self.normal_reference_image_counts),
            len(self.normal_reference_patch_counts),
        }
        if len(lengths) > 1:
            raise ValueError(
                "normal_reference_classes, normal_reference_image_counts and normal_reference_patch_counts must have "
                f"one entry per class, got {self.normal_reference_classes}, {self.normal_reference_image_counts} and "
                f"{self.normal_reference_patch_counts}: set the bank with FAPromptModel.set_normal_references, not by "
                "hand."
            )
        clip = self.clip_config
        if isinstance(clip, CLIPConfig):
            vision_layers = clip.vision_config.num_hidden_layers
            if not 0 <= self.num_vv_blocks <= vision_layers:
                raise ValueError(f"num_vv_blocks must lie in [0, {vision_layers}], got {self.num_vv_blocks}.")
            text_layers = clip.text_config.num_hidden_layers
            if self.deep_prompt_depth > text_layers:
                raise ValueError(
                    f"deep_prompt_depth ({self.deep_prompt_depth}) exceeds the text tower's {text_layers} blocks: "
                    "deep prompts beyond the last block would never be used."
                )
            self.check_input_size(self.image_size, name="image_size")
            if self.prompt_length > clip.text_config.max_position_embeddings:
                raise ValueError(
                    f"The abnormal prompt has {self.prompt_length} tokens, more than the text tower's "
                    f"{clip.text_config.max_position_embeddings} positions."
                )

    @property
    def patch_size(self) -> int:
        """Side of the vision tower's square patches in pixels (14 for ViT-L/14)."""
        return self.clip_config.vision_config.patch_size

    def check_input_size(self, size: Any, name: str = "image_size", check_prior: bool = False) -> tuple[int, int]:
        """The one rule for an input size: positive ints, each a multiple of the patch size.

        Every boundary that takes an image size (the config, ``forward``, the processor built from a config,
        evaluation, training, ONNX export, the scripts' ``--image_size``) checks it here, with the same words.

        Args:
            size: A side S, or ``(height, width)``.
            name: What the caller calls it, for the message (``"image_size"``, ``"--image_size"``, ``"input size"``).
            check_prior: Also require at least ``prior_num_patches`` patches (the prior's input).

        Returns:
            ``(height, width)``.

        Raises:
            ValueError: Not positive ints, not multiples of the patch size (the message names the nearest
                multiple), or (with ``check_prior``) too few patches for the prior.
        """
        sides = (size, size) if not isinstance(size, (tuple, list)) else tuple(size)
        if len(sides) != 2 or any(isinstance(side, bool) or not isinstance(side, int) or side <= 0 for side in sides):
            raise ValueError(f"{name} must be a positive int or (height, width) of positive ints, got {size!r}.")
        patch_size = self.patch_size
        if sides[0] % patch_size or sides[1] % patch_size:
            bad = sides[0] if sides[0] % patch_size else sides[1]
            nearest = max(patch_size, round(bad / patch_size) * patch_size)
            shown = sides[0] if sides[0] == sides[1] else f"{sides[0]}x{sides[1]}"
            raise ValueError(
                f"{name} {shown} is not a multiple of the patch size {patch_size}: use a multiple, for example "
                f"{nearest}."
            )
        num_patches = (sides[0] // patch_size) * (sides[1] // patch_size)
        if check_prior and num_patches < self.prior_num_patches:
            raise ValueError(
                f"{name} {sides[0]}x{sides[1]} gives {num_patches} patches but the prior needs "
                f"{self.prior_num_patches}: use a larger size."
            )
        return sides

    def check_prompt_vocabulary(self, clip: str = "the CLIP", source: str = "the config") -> None:
        """Refuse prompt template token ids that the CLIP's token embedding cannot hold.

        Args:
            clip: The CLIP, as the message names it.
            source: Where the ids came from (``"its tokenizer"``, ``"the defaults (OpenAI CLIP's tokenizer)"``).

        Raises:
            ValueError: An id at or beyond the text tower's ``vocab_size``; the message says which files or fields
                fix it.
        """
        vocab_size = self.clip_config.text_config.vocab_size
        ids = [
            self.bos_token_id,
            self.eos_token_id,
            self.normal_placeholder_token_id,
            self.abnormal_placeholder_token_id,
            *self.normal_suffix_token_ids,
            *self.abnormal_suffix_token_ids,
        ]
        if max(ids) >= vocab_size:
            raise ValueError(
                f"The prompt template's token ids from {source} reach {max(ids)}, but {clip} has only {vocab_size} "
                "tokens. Put the CLIP's tokenizer files (tokenizer.json, or vocab.json and merges.txt) in the CLIP's "
                "folder (--clip), or give the ids as config fields (--config_overrides, or keyword arguments of "
                'FAPromptModel.from_clip), e.g. {"bos_token_id": 0, "eos_token_id": 1, "normal_placeholder_token_id": '
                '2, "abnormal_placeholder_token_id": 3, "normal_suffix_token_ids": [4, 5], '
                "\"abnormal_suffix_token_ids\": [6, 4, 5]}; see docs/training.md, 'Training offline'."
            )

    @property
    def prompt_length(self) -> int:
        """Tokens of the longest (abnormal) prompt, up to and including EOT: the text tower never needs more."""
        return 1 + self.normal_context_length + self.abnormal_context_length + len(self.abnormal_suffix_token_ids) + 1

    @property
    def prior_hidden_size(self) -> int:
        """Hidden width of the prior network, ``M * D / reduction`` (480 for the parity fixture)."""
        return max(1, self.prior_num_patches * self.clip_config.projection_dim // self.prior_hidden_reduction)

    def normal_prompt_ids(self) -> list[int]:
        """Token ids of the normal template: ``SOT N*E <normal suffix> EOT``."""
        return [
            self.bos_token_id,
            *[self.normal_placeholder_token_id] * self.normal_context_length,
            *self.normal_suffix_token_ids,
            self.eos_token_id,
        ]

    def abnormal_prompt_ids(self) -> list[int]:
        """Token ids of the abnormal template: ``SOT N*E A*E' <abnormal suffix> EOT``."""
        return [
            self.bos_token_id,
            *[self.normal_placeholder_token_id] * self.normal_context_length,
            *[self.abnormal_placeholder_token_id] * self.abnormal_context_length,
            *self.abnormal_suffix_token_ids,
            self.eos_token_id,
        ]


class FAPromptConfigError(StrictDataclassClassValidationError, ValueError):
    """A configuration whose fields do not fit together or the CLIP (a ``ValueError``, as ``docs/errors.md`` says).

    It stays a ``StrictDataclassClassValidationError`` too, for code that catches huggingface_hub's error.
    """

    def __init__(self, message: str) -> None:
        Exception.__init__(self, message)


_strict_validate = FAPromptConfig.validate


def _validate(config: FAPromptConfig) -> None:
    """``config.validate()``: the strict dataclass's class validators, with their errors raised as ValueErrors."""
    try:
        _strict_validate(config)
    except StrictDataclassClassValidationError as error:
        raise FAPromptConfigError(str(error)) from error.__cause__


FAPromptConfig.validate = _validate  # the strict decorator's __init__ wrapper calls cls.validate
