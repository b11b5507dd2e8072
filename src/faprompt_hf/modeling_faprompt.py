# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""FAPrompt: fine-grained abnormality prompts on a frozen CLIP (``docs/method.md``).

Paper: Zhu, Ong, Shen, Pang, "Fine-grained Abnormality Prompt Learning for Zero-shot Anomaly Detection",
ICCV 2025 (arXiv 2410.10289). Where the paper and the authors' released code differ, this module follows the
released code (its checkpoints and published numbers); ``docs/differences.md`` lists the differences.

This module holds model maths only: no file, network or tokenizer access. Loading and saving come from
:class:`faprompt_hf.checkpoints.FAPromptCheckpointMixin`, as transformers' ``PreTrainedModel`` gives them to its
models; the mixin never imports this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPModel, PreTrainedModel
from transformers.utils import ModelOutput

from ._compat import ALL_ATTENTION_FUNCTIONS, eager_attention_forward
from ._compat import initialization as init
from .checkpoints import PROMPT_PREFIX, FAPromptCheckpointMixin
from .configuration_faprompt import FAPromptConfig
from .loss_faprompt import binary_focal_loss, dice_loss, focal_loss, orthogonality_loss, prior_loss
from .validation import check_model_inputs

__all__ = [
    "DEFAULT_REFERENCE_CLASS",
    "REFERENCE_BANK_KEY",
    "FAPromptModel",
    "FAPromptNormalReferences",
    "FAPromptOutput",
    "FAPromptPreTrainedModel",
    "FAPromptStaticPrompts",
    "add_prior_to_prompts",
    "bilinear_resize_matrix",
    "check_gaussian_sigma",
    "gaussian_smooth",
    "resize_position_embeddings",
]


class FAPromptStaticPrompts(NamedTuple):
    """The prompt side that does not depend on the image: fixed once training is over.

    ``FAPromptModel.forward(..., static_prompts=...)`` takes it precomputed (the ONNX export bakes it into the graph
    this way); by default the model computes it, and caches it while gradients are off.

    Attributes:
        normal_feature: Unnormalised feature of the normal prompt (D,), float32.
        abnormal_features: Unnormalised features of the K abnormal prompts (K, D), float32.
        abnormal_prompt_embeds: Token embeddings of the K abnormal prompts before the prior is added (K, La, Dt).
    """

    normal_feature: torch.Tensor
    abnormal_features: torch.Tensor
    abnormal_prompt_embeds: torch.Tensor


def add_prior_to_prompts(prompt_embeds: torch.Tensor, prior_bias: torch.Tensor, context: slice) -> torch.Tensor:
    """Add each image's prior omega to the abnormal context tokens of the K abnormal prompts (method §4).

    The one home of FAPrompt's prompt splicing: the model's forward and the ONNX export both use it.

    Args:
        prompt_embeds: The abnormal prompts' token embeddings (K, La, Dt).
        prior_bias: omega per image (B, Dt).
        context: The positions of the abnormal context tokens in a prompt.

    Returns:
        Prior-conditioned prompt embeddings (B * K, La, Dt), image-major, in ``prompt_embeds``' dtype.
    """
    batch = prior_bias.shape[0]
    expanded = prompt_embeds.expand(batch, *prompt_embeds.shape)
    conditioned = expanded[:, :, context] + prior_bias.to(prompt_embeds.dtype)[:, None, None, :]
    embeds = torch.cat([expanded[:, :, : context.start], conditioned, expanded[:, :, context.stop :]], dim=2)
    return embeds.reshape(-1, *prompt_embeds.shape[1:])


def check_gaussian_sigma(sigma: Any, name: str = "gaussian_sigma", size: tuple[int, int] | None = None) -> float:
    """A smoothing sigma in pixels: a finite number >= 0 (0 turns smoothing off), at most the map's longer side.

    A sigma wider than the map flattens it to nearly its mean, and the kernel's cost grows with sigma
    (``gaussian_sigma=1e6`` took minutes and gigabytes for two 32 px images): it is refused.

    Args:
        sigma: The value given.
        name: The argument's name, for the message.
        size: The anomaly map's (height, width), when known: sigma may not exceed ``max(height, width)``.

    Returns:
        ``float(sigma)``.

    Raises:
        ValueError: Not a number, a bool, NaN, inf, negative, or larger than the map.
    """
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma < 0:
        raise ValueError(f"{name} must be a finite number >= 0 (pixels; 0 turns smoothing off), got {sigma!r}.")
    if size is not None and sigma > max(size):
        raise ValueError(
            f"{name}={sigma!r} is wider than the {size[0]}x{size[1]} anomaly map: it would flatten the map and its "
            f"kernel would cost time and memory in proportion to sigma. Use a sigma of at most {max(size)} pixels "
            "(the released evaluation uses 10; 0 turns smoothing off)."
        )
    return float(sigma)


def _check_finite_outputs(pixel_values: torch.Tensor, image_scores: torch.Tensor, anomaly_maps: torch.Tensor) -> None:
    """Refuse scores or maps that overflowed to NaN or inf (finite but huge pixels, e.g. 1e30), naming the range."""
    if bool(torch.isfinite(image_scores).all() & torch.isfinite(anomaly_maps).all()):  # one device sync
        return
    low, high = float(pixel_values.min()), float(pixel_values.max())
    raise ValueError(
        f"The model's scores or maps are NaN or infinite for pixel_values in [{low:.3g}, {high:.3g}]: values that "
        "large overflow inside the vision tower. pixel_values must be normalised images (about [-2, 2.2] with CLIP's "
        "mean and std), as FAPromptImageProcessor returns them."
    )


@dataclass
class FAPromptOutput(ModelOutput):
    """Outputs of [`FAPromptModel`]. G = number of patches (grid height x width), D = joint embedding width.

    Attributes:
        loss: Total training objective (scalar), when ``labels`` are given.
        image_scores: Image anomaly scores (B,), in [0, 1].
        anomaly_maps: Pixel anomaly maps (B, H, W) at the input size, smoothed with ``config.gaussian_sigma``.
        raw_anomaly_maps: The same maps before smoothing (B, H, W).
        static_patch_scores: Softmax scores s of each patch against [normal, abnormal] static prompts (B, G, 2).
        prior_patch_scores: Softmax scores s-hat against the image's prior-conditioned prompts (B, G, 2).
        image_text_scores: Abnormal probability p of the image embedding against its own prompts (B,).
        static_text_features: Normalised [normal, mean abnormal] static prompt features (2, D).
        prior_text_features: Normalised [normal, mean abnormal] prompt features per image (B, 2, D).
        abnormal_text_features: Unnormalised static feature of each abnormal prompt (K, D).
        prior_bias: The abnormality prior omega added to every abnormal context token (B, Dt).
        prior_patch_indices: Indices (into the G patches) of the patches fed to the prior (B, M).
        image_embeds: Normalised image embedding (B, D).
        patch_embeds: Normalised V-V patch embeddings, class token first (B, G + 1, D).
        loss_local: Pixel-level loss term (scalar), when ``labels`` are given.
        loss_global: Image-level loss term (scalar).
        loss_orthogonality: Pairwise |cos| of the abnormal prompts (scalar, unweighted).
        loss_prior: Prior penalty on normal images (scalar, unweighted).
        reference_maps: With normal references, each pixel's distance from the nearest normal reference patch,
            upsampled and smoothed like ``anomaly_maps`` (B, H, W); None without references.
        reference_scores: With normal references, the maximum of each reference map (B,); None without references.
    """

    loss: torch.Tensor | None = None
    image_scores: torch.Tensor | None = None
    anomaly_maps: torch.Tensor | None = None
    raw_anomaly_maps: torch.Tensor | None = None
    static_patch_scores: torch.Tensor | None = None
    prior_patch_scores: torch.Tensor | None = None
    image_text_scores: torch.Tensor | None = None
    static_text_features: torch.Tensor | None = None
    prior_text_features: torch.Tensor | None = None
    abnormal_text_features: torch.Tensor | None = None
    prior_bias: torch.Tensor | None = None
    prior_patch_indices: torch.Tensor | None = None
    image_embeds: torch.Tensor | None = None
    patch_embeds: torch.Tensor | None = None
    loss_local: torch.Tensor | None = None
    loss_global: torch.Tensor | None = None
    loss_orthogonality: torch.Tensor | None = None
    loss_prior: torch.Tensor | None = None
    reference_maps: torch.Tensor | None = None
    reference_scores: torch.Tensor | None = None


def resize_position_embeddings(position_embeddings: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Resize ViT position embeddings to a new patch grid with bilinear interpolation (method §1).

    Args:
        position_embeddings: The checkpoint's embeddings (1 + G0 * G0, C), class position first.
        grid: Target grid (height, width) in patches.

    Returns:
        Embeddings (1 + height * width, C); the class position is kept as is. Pure: no weight is modified.
    """
    num_positions, channels = position_embeddings.shape
    side = math.isqrt(num_positions - 1)
    if side * side != num_positions - 1:
        raise ValueError(f"Position embeddings of {num_positions - 1} patches do not form a square grid.")
    if (side, side) == tuple(grid):
        return position_embeddings
    patch_positions = position_embeddings[1:].reshape(1, side, side, channels).permute(0, 3, 1, 2)
    resized = F.interpolate(patch_positions.float(), size=tuple(grid), mode="bilinear", align_corners=False)
    resized = resized.to(position_embeddings.dtype).permute(0, 2, 3, 1).reshape(-1, channels)
    return torch.cat([position_embeddings[:1], resized], dim=0)


# Keys of a data collator's batch that are not model inputs.
_IGNORED_BATCH_KEYS = frozenset({"class_names", "paths", "defect_types"})


def bilinear_resize_matrix(out_size: int, in_size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The (out, in) matrix of 1-D bilinear resizing with ``align_corners=False`` (PyTorch's convention).

    ``A @ x`` resizes a length-``in_size`` signal to ``out_size``; ``A_h @ X @ A_w.T`` resizes an image exactly as
    ``F.interpolate(X, mode="bilinear", align_corners=False)`` does.
    """
    scale = in_size / out_size
    source = ((torch.arange(out_size, device=device, dtype=torch.float64) + 0.5) * scale - 0.5).clamp(min=0)
    lower = source.floor().long().clamp(max=in_size - 1)
    upper = (lower + 1).clamp(max=in_size - 1)
    upper_weight = source - lower
    matrix = torch.zeros(out_size, in_size, device=device, dtype=torch.float64)
    rows = torch.arange(out_size, device=device)
    matrix.index_put_((rows, lower), 1 - upper_weight, accumulate=True)
    matrix.index_put_((rows, upper), upper_weight, accumulate=True)
    return matrix.to(dtype)


def _full_precision(device: torch.device) -> torch.autocast:
    """Disable autocast: similarities, softmaxes, maps and losses stay in float32 under mixed precision."""
    return torch.autocast(device_type=device.type, enabled=False)


def _reflect_indices(length: int, radius: int, device: torch.device) -> torch.Tensor:
    """Indices that pad a length-``length`` axis by ``radius`` on each side in scipy's "reflect" mode."""
    positions = torch.arange(-radius, length + radius, device=device)
    folded = positions.remainder(2 * length)
    return torch.where(folded >= length, 2 * length - 1 - folded, folded)


def gaussian_smooth(maps: torch.Tensor, sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """Smooth each 2-D map with a Gaussian, on the maps' own device.

    Equal (to float rounding) to ``scipy.ndimage.gaussian_filter(map, sigma, mode="reflect", truncate=truncate)``
    applied to every map on its own.

    Args:
        maps: Maps (B, H, W).
        sigma: Standard deviation in pixels; 0 returns the maps unchanged.
        truncate: Kernel radius in standard deviations.

    Returns:
        Smoothed maps (B, H, W), same dtype.
    """
    if sigma <= 0:
        return maps
    radius = int(truncate * float(sigma) + 0.5)
    offsets = torch.arange(-radius, radius + 1, device=maps.device, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / float(sigma)) ** 2)
    kernel = (kernel / kernel.sum()).to(torch.float32)
    height, width = maps.shape[-2:]
    smoothed = maps.float().unsqueeze(1)
    smoothed = smoothed.index_select(3, _reflect_indices(width, radius, maps.device))
    smoothed = F.conv2d(smoothed, kernel.view(1, 1, 1, -1))
    smoothed = smoothed.index_select(2, _reflect_indices(height, radius, maps.device))
    smoothed = F.conv2d(smoothed, kernel.view(1, 1, -1, 1))
    return smoothed.squeeze(1).to(maps.dtype)


class _Scores(NamedTuple):
    """What :meth:`FAPromptModel._score` hands to the maps and the objective (shapes as in [`FAPromptOutput`])."""

    grid: tuple[int, int]
    static_patch_scores: torch.Tensor
    prior_patch_scores: torch.Tensor
    image_logits: torch.Tensor
    image_text_scores: torch.Tensor
    image_scores: torch.Tensor
    static_text_features: torch.Tensor
    prior_text_features: torch.Tensor
    abnormal_text_features: torch.Tensor
    prior_bias: torch.Tensor
    prior_patch_indices: torch.Tensor


class FAPromptPriorNetwork(nn.Module):
    """The data-dependent abnormality prior psi: Linear(M*D -> M*D/r) -> ReLU -> Linear(-> Dt)."""

    def __init__(self, config: FAPromptConfig) -> None:
        super().__init__()
        in_features = config.prior_num_patches * config.clip_config.projection_dim
        self.fc1 = nn.Linear(in_features, config.prior_hidden_size)
        self.fc2 = nn.Linear(config.prior_hidden_size, config.clip_config.text_config.hidden_size)

    def forward(self, patch_embeds: torch.Tensor) -> torch.Tensor:
        """Map M selected patch embeddings to a bias for the abnormal contexts.

        Args:
            patch_embeds: Selected normalised patch embeddings (B, M, D).

        Returns:
            The prior omega (B, Dt).
        """
        return self.fc2(F.relu(self.fc1(patch_embeds.flatten(1))))


class FAPromptPromptLearner(nn.Module):
    """The learnable text side: normal and abnormal contexts, deep text prompts and the prior network.

    Attributes:
        normal_context: E learnable tokens shared by every prompt (E, Dt).
        abnormal_context: E' learnable tokens for each of the K abnormal prompts (K, E', Dt).
        deep_prompts: Tokens that replace positions 1..length before text blocks 1..depth-1 (depth-1, length, Dt).
        prior: The abnormality prior network.
        normal_prompt_ids: Token ids of the normal template (Ln,); non-persistent, rebuilt from the config.
        abnormal_prompt_ids: Token ids of the abnormal template (La,); non-persistent.
    """

    def __init__(self, config: FAPromptConfig) -> None:
        super().__init__()
        width = config.clip_config.text_config.hidden_size
        self.normal_context = nn.Parameter(torch.empty(config.normal_context_length, width))
        self.abnormal_context = nn.Parameter(
            torch.empty(config.num_abnormal_prompts, config.abnormal_context_length, width)
        )
        self.deep_prompts = nn.Parameter(torch.empty(config.deep_prompt_depth - 1, config.deep_prompt_length, width))
        self.prior = FAPromptPriorNetwork(config)
        self.register_buffer("normal_prompt_ids", torch.tensor(config.normal_prompt_ids()), persistent=False)
        self.register_buffer("abnormal_prompt_ids", torch.tensor(config.abnormal_prompt_ids()), persistent=False)


#: The state-dict name of the normal-reference bank.
REFERENCE_BANK_KEY = "normal_references.features"

#: The class name used by :meth:`FAPromptModel.set_normal_references` when none is given.
DEFAULT_REFERENCE_CLASS = "default"

#: Largest similarity matrix (patches x bank rows) computed at once by :func:`normal_reference_distances`.
_REFERENCE_CHUNK_ELEMENTS = 2**25


class FAPromptNormalReferences(nn.Module):
    """The bank of normal reference patch features: rows of every class, concatenated in config order.

    ``features`` is None while the bank is empty, so a model without references has today's state dict. The class
    names and row counts live in the config (``normal_reference_*``); this module only holds the tensor.
    """

    def __init__(self, config: FAPromptConfig) -> None:
        super().__init__()
        rows = sum(config.normal_reference_patch_counts)
        width = config.clip_config.projection_dim
        self.register_buffer("features", torch.zeros(rows, width) if rows else None)


def normal_reference_distances(patch_tokens: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """Each patch's distance from its nearest normal reference patch: ``1 - max cosine``, clipped to [0, 1].

    Batched matrix products over chunks of the bank (no loop over patches), so memory stays bounded for large banks.
    While a graph is exported (``torch.export``, the ONNX export) the bank is one chunk, so that the graph does not
    depend on the batch size.

    Args:
        patch_tokens: Normalised patch features (B, G, D).
        bank: Normalised reference patch features (N, D), N >= 1.

    Returns:
        Distances (B, G) in float32.
    """
    queries = patch_tokens.float()
    bank = bank.to(device=queries.device, dtype=torch.float32)
    if torch.compiler.is_exporting():
        chunk = bank.shape[0]
    else:
        chunk = max(1, _REFERENCE_CHUNK_ELEMENTS // max(1, queries.shape[0] * queries.shape[1]))
    best = None
    for start in range(0, bank.shape[0], chunk):
        similarity = (queries @ bank[start : start + chunk].T).amax(-1)
        best = similarity if best is None else torch.maximum(best, similarity)
    return (1.0 - best).clamp(0.0, 1.0)


class FAPromptPreTrainedModel(FAPromptCheckpointMixin, PreTrainedModel):
    """Weight initialisation shared by FAPrompt models; loading and saving come from the checkpoint mixin."""

    config_class = FAPromptConfig
    base_model_prefix = "clip"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    # CLIP's layers only checkpoint in training mode, and the frozen CLIP always runs in eval mode.
    supports_gradient_checkpointing = False
    _no_split_modules = ["CLIPTextEmbeddings", "CLIPEncoderLayer", "CLIPVisionEmbeddings"]
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_flex_attn = False
    _supports_attention_backend = True

    @classmethod
    def learned_state_keys(cls, config: FAPromptConfig) -> set[str]:
        """The ``prompt_learner.*`` tensor names an FAPrompt checkpoint of ``config`` must hold (checkpoint hook)."""
        with torch.device("meta"):
            learner = FAPromptPromptLearner(config)
        keys = {PROMPT_PREFIX + key for key in learner.state_dict()}
        if config.normal_reference_classes:
            keys.add(REFERENCE_BANK_KEY)
        return keys

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Initialise FAPrompt's own tensors; CLIP's modules keep CLIP's own initialisation."""
        config = self.config
        if isinstance(module, FAPromptPromptLearner):
            init.normal_(module.normal_context, std=config.prompt_init_std)
            init.normal_(module.abnormal_context, std=config.prompt_init_std)
            init.normal_(module.deep_prompts, std=config.prompt_init_std)
            init.copy_(module.normal_prompt_ids, torch.tensor(config.normal_prompt_ids()))
            init.copy_(module.abnormal_prompt_ids, torch.tensor(config.abnormal_prompt_ids()))
        elif isinstance(module, FAPromptNormalReferences):
            if module.features is not None:
                init.zeros_(module.features)  # (the saved bank replaces it; only a bank-less load keeps zeros)
        elif isinstance(module, nn.Linear):
            # Only the prior network's layers reach here (CLIP's modules use CLIP's own initialisation):
            # PyTorch's default Linear initialisation, as the reference's prior network uses.
            bound = module.in_features**-0.5
            init.uniform_(module.weight, -bound, bound)
            init.uniform_(module.bias, -bound, bound)


class FAPromptModel(FAPromptPreTrainedModel):
    """FAPrompt around a frozen ``CLIPModel``: image in; image score, anomaly map and (with labels) loss out.

    Only ``prompt_learner`` is trainable (about 4.1 M parameters with ViT-L/14); ``clip`` is frozen at construction.

    Example:
        >>> from faprompt_hf import FAPromptModel, FAPromptProcessor  # doctest: +SKIP
        >>> model = FAPromptModel.from_clip("openai/clip-vit-large-patch14-336")  # doctest: +SKIP
        >>> out = model(pixel_values=processor(images=image, return_tensors="pt")["pixel_values"])  # doctest: +SKIP
        >>> out.image_scores, out.anomaly_maps.shape  # doctest: +SKIP
    """

    def __init__(self, config: FAPromptConfig) -> None:
        super().__init__(config)
        self.clip = CLIPModel._from_config(config.clip_config)
        self.prompt_learner = FAPromptPromptLearner(config)
        self.normal_references = FAPromptNormalReferences(config)
        self.clip.requires_grad_(False)
        self._static_text_cache: tuple[Any, FAPromptStaticPrompts] | None = None
        self._normal_reference_version = 0
        self.post_init()

    def train(self, mode: bool = True) -> FAPromptModel:
        """Set training mode for the prompts; the frozen CLIP always stays in eval mode (no dropout)."""
        super().train(mode)
        self.clip.eval()
        self.clear_static_text_cache()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters FAPrompt learns (the prompt learner's), for the optimizer."""
        return [parameter for parameter in self.prompt_learner.parameters() if parameter.requires_grad]

    # ------------------------------------------------------------------ vision side

    def encode_image(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the vision tower with the V-V path in its last ``num_vv_blocks`` blocks (method §2).

        Args:
            pixel_values: Normalised images (B, 3, H, W); H and W must be multiples of the patch size.

        Returns:
            ``(image_embeds, patch_embeds)``: the normalised class-token embedding of the original path,
            projected without the post-layernorm (B, D), and the normalised V-V path tokens after the
            post-layernorm and projection, class token first (B, 1 + G, D).
        """
        vision = self.clip.vision_model
        patch_size = self.config.patch_size
        height, width = self.config.check_input_size(tuple(pixel_values.shape[-2:]), name="input size")
        embeddings = vision.embeddings
        weight_dtype = embeddings.patch_embedding.weight.dtype
        patches = embeddings.patch_embedding(pixel_values.to(weight_dtype)).flatten(2).transpose(1, 2)
        class_token = embeddings.class_embedding.to(patches.dtype).expand(patches.shape[0], 1, -1)
        positions = resize_position_embeddings(
            embeddings.position_embedding.weight, (height // patch_size, width // patch_size)
        )
        hidden = vision.pre_layrnorm(torch.cat([class_token, patches], dim=1) + positions.to(patches.dtype))

        layers = vision.encoder.layers
        first_vv_block = len(layers) - self.config.num_vv_blocks
        vv_hidden = None
        for index, layer in enumerate(layers):
            if index < first_vv_block:
                hidden = layer(hidden, None)
                continue
            original_update, vv_update = self._dual_attention(layer, layer.layer_norm1(hidden))
            vv_hidden = (hidden if vv_hidden is None else vv_hidden) + vv_update
            hidden = hidden + original_update
            hidden = hidden + layer.mlp(layer.layer_norm2(hidden))
        if vv_hidden is None:
            vv_hidden = hidden
        patch_embeds = self.clip.visual_projection(vision.post_layernorm(vv_hidden))
        image_embeds = self.clip.visual_projection(hidden[:, 0])
        return F.normalize(image_embeds.float(), dim=-1), F.normalize(patch_embeds.float(), dim=-1)

    def _dual_attention(self, layer: nn.Module, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One block's two attentions with shared weights: softmax(qk^T)v and the V-V softmax(vv^T)v.

        Args:
            layer: A ``CLIPEncoderLayer``.
            hidden: Its layer-normed input (B, L, C).

        Returns:
            The two attention outputs after the block's output projection, each (B, L, C).
        """
        attention = layer.self_attn
        batch, length, _ = hidden.shape
        heads_shape = (batch, length, -1, attention.head_dim)
        query = attention.q_proj(hidden).view(heads_shape).transpose(1, 2)
        key = attention.k_proj(hidden).view(heads_shape).transpose(1, 2)
        value = attention.v_proj(hidden).view(heads_shape).transpose(1, 2)
        attention_function = ALL_ATTENTION_FUNCTIONS.get_interface(
            attention.config._attn_implementation, eager_attention_forward
        )
        original, _ = attention_function(attention, query, key, value, None, scaling=attention.scale, dropout=0.0)
        value_value, _ = attention_function(attention, value, value, value, None, scaling=attention.scale, dropout=0.0)
        original = attention.out_proj(original.reshape(batch, length, -1))
        value_value = attention.out_proj(value_value.reshape(batch, length, -1))
        return original, value_value

    # ------------------------------------------------------------------ normal references (few-shot)

    @property
    def normal_reference_classes(self) -> list[str]:
        """Names of the classes in the normal-reference bank, in the order they were added."""
        return list(self.config.normal_reference_classes)

    @torch.no_grad()
    def encode_normal_references(self, pixel_values: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """The bank rows of normal reference images: their normalised V-V patch features, in float32.

        Args:
            pixel_values: Normalised normal images (R, 3, H, W), R >= 1, as :class:`FAPromptProcessor` prepares them
                (``processor(references=...)``); H, W multiples of the patch size.
            batch_size: Images per pass through the vision tower (default: all at once).

        Returns:
            Patch features (R * G, D), image by image in row-major patch order.

        Raises:
            ValueError: No images, NaN/inf pixels or another input rule of ``forward``, a bad input size, or a
                ``batch_size`` below 1.
        """
        check_model_inputs(pixel_values)
        self.config.check_input_size(tuple(pixel_values.shape[-2:]), name="reference input size")
        step = pixel_values.shape[0] if batch_size is None else batch_size
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise ValueError(f"batch_size must be an int >= 1 or None, got {batch_size!r}.")
        was_training = self.training
        self.eval()
        try:
            rows = [
                self.encode_image(pixel_values[start : start + step])[1][:, 1:]
                for start in range(0, pixel_values.shape[0], step)
            ]
        finally:
            self.train(was_training)
        return torch.cat(rows).reshape(-1, rows[0].shape[-1]).float()

    def set_normal_references(
        self,
        pixel_values: torch.Tensor,
        class_name: str | None = None,
        replace: bool = False,
        batch_size: int | None = None,
    ) -> None:
        """Add normal reference images to the bank of ``class_name`` (few-shot; ``docs/few_shot.md``).

        Their V-V patch features (the features the text maps use, :meth:`encode_normal_references`) are appended to
        the class's rows, or replace them with ``replace=True``. Other classes are kept. The rows are float32 (a
        later ``model.to(dtype)`` casts them like any buffer; distances are always computed in float32). The bank
        is only changed once every feature is computed, so a refused input leaves it as it was. It is saved with
        the model.

        Args:
            pixel_values: Normalised normal images (R, 3, H, W), R >= 1.
            class_name: The bank's key (default :data:`DEFAULT_REFERENCE_CLASS`).
            replace: Replace the class's earlier rows instead of appending to them.
            batch_size: Images per pass through the vision tower (default: all at once).

        Raises:
            ValueError: An empty class name, or an input :meth:`encode_normal_references` refuses.
        """
        name = DEFAULT_REFERENCE_CLASS if class_name is None else class_name
        if not isinstance(name, str) or not name:
            raise ValueError(f"class_name must be a non-empty string or None, got {class_name!r}.")
        new_rows = self.encode_normal_references(pixel_values, batch_size)
        banks = self._reference_banks()
        images = pixel_values.shape[0]
        if name in banks and not replace:
            held_images, held_rows = banks[name]
            images, new_rows = held_images + images, torch.cat([held_rows, new_rows.to(held_rows)])
        banks[name] = (images, new_rows)
        self._store_reference_banks(banks)

    def clear_normal_references(self, class_name: str | None = None) -> None:
        """Remove one class from the normal-reference bank, or every class (``class_name=None``).

        Raises:
            ValueError: ``class_name`` is not in the bank (the message lists the classes it holds).
        """
        if class_name is None:
            self._store_reference_banks({})
            return
        banks = self._reference_banks()
        self._check_reference_class(class_name)
        del banks[class_name]
        self._store_reference_banks(banks)

    def normal_reference_features(self, class_name: str | None = None) -> torch.Tensor:
        """The bank rows of one class (N, D): the only class when the bank holds one, else ``class_name``.

        Raises:
            ValueError: The bank is empty, holds several classes and ``class_name`` is None, or does not hold
                ``class_name`` (the message lists the classes it holds).
        """
        names = self.config.normal_reference_classes
        if not names:
            raise ValueError(
                "The model holds no normal references: add some with model.set_normal_references(pixel_values, "
                "class_name=...)."
            )
        if class_name is None:
            if len(names) > 1:
                raise ValueError(
                    f"The model holds normal references of several classes {names}: choose one with "
                    "normal_reference_class=NAME."
                )
            class_name = names[0]
        self._check_reference_class(class_name)
        index = names.index(class_name)
        start = sum(self.config.normal_reference_patch_counts[:index])
        return self.normal_references.features[start : start + self.config.normal_reference_patch_counts[index]]

    def _check_reference_class(self, class_name: str) -> None:
        names = self.config.normal_reference_classes
        if class_name not in names:
            known = f"it holds {names}" if names else "it is empty"
            raise ValueError(f"No normal references of class {class_name!r} in the model's bank: {known}.")

    def _reference_banks(self) -> dict[str, tuple[int, torch.Tensor]]:
        """The bank as ``{class: (image count, rows (N, D))}``, in bank order."""
        config = self.config
        features = self.normal_references.features
        banks, start = {}, 0
        for name, images, rows in zip(
            config.normal_reference_classes,
            config.normal_reference_image_counts,
            config.normal_reference_patch_counts,
            strict=True,
        ):
            banks[name] = (images, features[start : start + rows])
            start += rows
        return banks

    @property
    def normal_reference_version(self) -> int:
        """A counter that changes whenever the normal-reference bank changes (for caches of what it holds)."""
        return self._normal_reference_version

    def _store_reference_banks(self, banks: dict[str, tuple[int, torch.Tensor]]) -> None:
        """Write ``{class: (image count, rows)}`` into the buffer and the config together.

        The rows are joined first, so that a failure (out of memory) leaves both as they were.
        """
        features = torch.cat([rows for _, rows in banks.values()]) if banks else None
        config = self.config
        config.normal_reference_classes = list(banks)
        config.normal_reference_image_counts = [images for images, _ in banks.values()]
        config.normal_reference_patch_counts = [rows.shape[0] for _, rows in banks.values()]
        self.normal_references.features = features
        self._normal_reference_version += 1

    # ------------------------------------------------------------------ text side

    def encode_prompts(self, prompt_embeds: torch.Tensor, eot_positions: torch.Tensor) -> torch.Tensor:
        """Run the text tower on prompt embeddings with deep prompts inserted (method §3).

        Sequences only need to reach their EOT token: under the causal mask later tokens never influence it.

        Args:
            prompt_embeds: Token embeddings of P prompts (P, L, Dt), without position embeddings.
            eot_positions: Index of each prompt's EOT token (P,).

        Returns:
            Unnormalised prompt features (P, D), in float32.
        """
        text = self.clip.text_model
        dtype = text.final_layer_norm.weight.dtype
        length = prompt_embeds.shape[1]
        hidden = prompt_embeds.to(dtype) + text.embeddings.position_embedding.weight[:length]
        causal_mask = torch.full((length, length), torch.finfo(dtype).min, device=hidden.device, dtype=dtype)
        causal_mask = causal_mask.triu(1)[None, None]
        deep_prompts = self.prompt_learner.deep_prompts.to(dtype)
        deep_length = deep_prompts.shape[1]
        for index, layer in enumerate(text.encoder.layers):
            if 1 <= index <= deep_prompts.shape[0]:
                inserted = deep_prompts[index - 1].expand(hidden.shape[0], -1, -1)
                if self.config.round_deep_prompts_to_float16:
                    inserted = inserted.half().to(dtype)
                hidden = torch.cat([hidden[:, :1], inserted, hidden[:, 1 + deep_length :]], dim=1)
            hidden = layer(hidden, causal_mask, is_causal=True)
        hidden = text.final_layer_norm(hidden)
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), eot_positions]
        return self.clip.text_projection(pooled).float()

    def _fixed_token_embeds(self, token_ids: torch.Tensor) -> torch.Tensor:
        """CLIP token embeddings of template tokens (n,) -> (n, Dt)."""
        return self.clip.text_model.embeddings.token_embedding(token_ids)

    @property
    def abnormal_context_positions(self) -> slice:
        """Where the abnormal context tokens sit in an abnormal prompt (after SOT and the normal context)."""
        start = 1 + self.config.normal_context_length
        return slice(start, start + self.config.abnormal_context_length)

    def abnormal_prompt_embeds(self) -> torch.Tensor:
        """Token embeddings of the K abnormal prompts, ``SOT [normal ctx] [abnormal ctx_k] suffix EOT`` (K, La, Dt)."""
        learner, config = self.prompt_learner, self.config
        ids = learner.abnormal_prompt_ids
        split = self.abnormal_context_positions.stop
        prefix, suffix = self._fixed_token_embeds(ids[:1]), self._fixed_token_embeds(ids[split:])
        shape = (config.num_abnormal_prompts,)
        return torch.cat(
            [
                prefix.expand(*shape, -1, -1),
                learner.normal_context.to(prefix.dtype).expand(*shape, -1, -1),
                learner.abnormal_context.to(prefix.dtype),
                suffix.expand(*shape, -1, -1),
            ],
            dim=-2,
        )

    def _normal_prompt_embeds(self, length: int) -> torch.Tensor:
        """Embeddings of the normal prompt, zero-padded after its EOT to ``length`` tokens (1, length, Dt)."""
        learner, config = self.prompt_learner, self.config
        ids = learner.normal_prompt_ids
        split = 1 + config.normal_context_length
        prefix, suffix = self._fixed_token_embeds(ids[:1]), self._fixed_token_embeds(ids[split:])
        embeds = torch.cat([prefix, learner.normal_context.to(prefix.dtype), suffix], dim=0)
        return F.pad(embeds, (0, 0, 0, length - embeds.shape[0]))[None]

    def static_prompts(self) -> FAPromptStaticPrompts:
        """The image-independent prompt side, in one text-tower call.

        The features of the normal and K abnormal prompts, and the abnormal prompts' embeddings that the prior is
        added to.

        Cached across calls while gradients are off and the prompts and text tower are unchanged (changes are
        seen through PyTorch's version counters; after editing ``.data`` directly, call
        :meth:`clear_static_text_cache`).

        Returns:
            An [`FAPromptStaticPrompts`].

        Raises:
            ValueError: A template token id (``config.eos_token_id``, ...) beyond the CLIP's vocabulary.
        """
        if not torch.compiler.is_compiling():
            self.config.check_prompt_vocabulary("the model's CLIP", "the config")
        cache_key = None
        if not torch.is_grad_enabled():
            learner = self.prompt_learner
            tensors = [
                learner.normal_context,
                learner.abnormal_context,
                learner.deep_prompts,
                *self.clip.text_model.parameters(),
                self.clip.text_projection.weight,
            ]
            cache_key = (
                self.config.round_deep_prompts_to_float16,
                tuple(self.config.normal_prompt_ids()),
                tuple(self.config.abnormal_prompt_ids()),
                *((t.data_ptr(), t._version, t.device, t.dtype) for t in tensors),
            )
            if self._static_text_cache is not None and self._static_text_cache[0] == cache_key:
                return self._static_text_cache[1]
        abnormal = self.abnormal_prompt_embeds()
        normal = self._normal_prompt_embeds(abnormal.shape[1])
        eot_positions = torch.tensor(
            [len(self.prompt_learner.normal_prompt_ids) - 1] + [abnormal.shape[1] - 1] * abnormal.shape[0],
            device=abnormal.device,
        )
        features = self.encode_prompts(torch.cat([normal, abnormal]), eot_positions)
        result = FAPromptStaticPrompts(features[0], features[1:], abnormal)
        self._static_text_cache = None if cache_key is None else (cache_key, result)
        return result

    def static_text_features(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(normal_feature (D,), abnormal_features (K, D))`` of :meth:`static_prompts`, unnormalised, float32."""
        normal_feature, abnormal_features, _ = self.static_prompts()
        return normal_feature, abnormal_features

    def clear_static_text_cache(self) -> None:
        """Forget the cached static prompt features (they are recomputed on the next forward)."""
        self._static_text_cache = None

    def prior_abnormal_features(
        self, prior_bias: torch.Tensor, abnormal_prompt_embeds: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mean feature of the K abnormal prompts conditioned on each image's prior, in one text-tower call.

        Args:
            prior_bias: omega per image (B, Dt).
            abnormal_prompt_embeds: The abnormal prompts' embeddings (K, La, Dt) (default:
                :meth:`abnormal_prompt_embeds`).

        Returns:
            Unnormalised mean abnormal feature per image (B, D), float32.
        """
        if abnormal_prompt_embeds is None:
            abnormal_prompt_embeds = self.abnormal_prompt_embeds()
        embeds = add_prior_to_prompts(abnormal_prompt_embeds, prior_bias, self.abnormal_context_positions)
        eot_positions = torch.full((embeds.shape[0],), embeds.shape[1] - 1, device=embeds.device)
        features = self.encode_prompts(embeds, eot_positions)
        return features.view(prior_bias.shape[0], self.config.num_abnormal_prompts, -1).mean(1)

    # ------------------------------------------------------------------ forward

    def select_prior_patches(self, abnormal_scores: torch.Tensor) -> torch.Tensor:
        """Indices of the M patches fed to the prior (method §4).

        Args:
            abnormal_scores: Static abnormal score S1 of every patch (B, G).

        Returns:
            Patch indices (B, M): the M highest S1 in descending order (``"top_m"``), or 0..M-1 (``"first_m"``).
        """
        num_patches = self.config.prior_num_patches
        if abnormal_scores.shape[1] < num_patches:
            raise ValueError(f"The prior needs {num_patches} patches but the image has {abnormal_scores.shape[1]}.")
        if self.config.prior_patch_selection == "first_m":
            indices = torch.arange(num_patches, device=abnormal_scores.device)
            return indices.expand(abnormal_scores.shape[0], -1)
        return abnormal_scores.topk(num_patches, dim=1, largest=True, sorted=True).indices

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        masks: torch.Tensor | None = None,
        mask_valid: torch.Tensor | None = None,
        gaussian_sigma: float | None = None,
        static_prompts: FAPromptStaticPrompts | None = None,
        return_dict: bool | None = None,
        allow_missing_masks: bool = False,
        normal_reference_class: str | None = None,
        normal_reference_features: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> FAPromptOutput | tuple:
        """Score images for anomalies, and compute the training objective when labels are given.

        Four phases: the vision tower with its V-V path; patch and image scores against the static and the
        prior-conditioned prompts (:meth:`_score`); upsampled and smoothed maps (:meth:`_anomaly_maps`); the
        objective (:meth:`_objective`).

        Args:
            pixel_values: Normalised images (B, 3, H, W), H and W multiples of the patch size.
            labels: Optional image labels (B,), 0 normal and 1 anomalous.
            masks: Optional ground-truth masks (B, H, W), binarised at 0.5; default zeros, which only normal
                images may use.
            mask_valid: Optional (B,) booleans from the data collator: False where a row's mask is a stand-in
                (no ground truth). An anomalous image without a real mask is an error, unless
                ``allow_missing_masks``.
            gaussian_sigma: Smoothing of ``anomaly_maps`` in pixels for this call (default:
                ``config.gaussian_sigma``); the config is not changed.
            static_prompts: The image-independent prompt side, precomputed (default: :meth:`static_prompts`).
            return_dict: Return a tuple instead of an [`FAPromptOutput`] when False.
            allow_missing_masks: Train on images without pixel ground truth: the pixel-level (local) losses use only
                the images whose ``mask_valid`` is True (default: normal images and, when ``masks`` are given, every
                anomalous one), the image-level losses use every image. When no image has pixel ground truth,
                ``loss_local`` is 0 and only the image-level objective trains.
            normal_reference_class: Which class of the normal-reference bank to compare with (``docs/few_shot.md``);
                needed only when the bank holds several classes. With references, ``anomaly_maps`` and
                ``image_scores`` fuse the text scores with the reference distances (``config.reference_map_weight``,
                ``config.reference_score_weight``); the loss uses the text scores alone. Without references the
                outputs are those of the zero-shot model, unchanged.
            normal_reference_features: Normalised reference patch features (N, D) to compare with instead of the
                model's bank (the ONNX export passes one class's rows, baked as a constant, as it passes
                ``static_prompts``); None (default) uses the bank.
            **kwargs: The collator's non-tensor keys (``class_names``, ``paths``, ``defect_types``) are accepted and
                ignored; any other keyword is an error.

        Returns:
            An [`FAPromptOutput`].

        Raises:
            ValueError: Inputs that break the rules of :func:`~faprompt_hf.validation.check_model_inputs` (not a
                floating (B, 3, H, W) batch, NaN/inf pixels, labels other than 0/1 or not one per image, masks of
                the wrong shape, outside [0, 1] or non-empty on normal images), an input size that breaks
                :meth:`FAPromptConfig.check_input_size`, a ``gaussian_sigma`` that is not a finite number >= 0 or is
                wider than the map (also the config's), an anomalous image without a mask, or (without labels) scores
                or maps that overflowed to NaN/inf because the pixels are far outside the normalised range.
            TypeError: An unknown keyword argument, or an input that is not a tensor.
        """
        unknown = sorted(set(kwargs) - _IGNORED_BATCH_KEYS)
        if unknown:
            raise TypeError(f"FAPromptModel.forward got unexpected keyword argument(s) {unknown}.")
        # Value checks need the tensors' contents, which a graph being traced (torch.compile / torch.export) lacks.
        masks = check_model_inputs(
            pixel_values, labels, masks, mask_valid, check_values=not torch.compiler.is_compiling()
        )
        size = tuple(pixel_values.shape[-2:])
        if gaussian_sigma is None:
            sigma = check_gaussian_sigma(self.config.gaussian_sigma, "config.gaussian_sigma", size)
        else:
            sigma = check_gaussian_sigma(gaussian_sigma, size=size)
        return_dict = return_dict if return_dict is not None else self.config.return_dict

        bank = normal_reference_features
        if bank is not None:
            if normal_reference_class is not None:
                raise ValueError("Pass normal_reference_class or normal_reference_features, not both.")
            if bank.ndim != 2 or bank.shape[0] == 0:
                raise ValueError(
                    f"normal_reference_features must be reference patch features (N, D), N >= 1, got shape "
                    f"{tuple(bank.shape)}."
                )
        elif normal_reference_class is not None or self.config.normal_reference_classes:
            bank = self.normal_reference_features(normal_reference_class)

        image_embeds, patch_embeds = self.encode_image(pixel_values)
        scores = self._score(image_embeds, patch_embeds, static_prompts or self.static_prompts(), size)
        with _full_precision(pixel_values.device):
            static_maps, prior_maps, raw_anomaly_maps, anomaly_maps = self._anomaly_maps(scores, size, sigma)
            image_scores, reference_maps, reference_scores = scores.image_scores, None, None
            if bank is not None:
                raw_anomaly_maps, anomaly_maps, reference_maps = self._fuse_reference_maps(
                    normal_reference_distances(patch_embeds[:, 1:], bank),
                    scores.grid,
                    raw_anomaly_maps,
                    anomaly_maps,
                    sigma,
                )
                reference_scores = reference_maps.flatten(1).amax(1)
                weight = self.config.reference_score_weight
                image_scores = (1 - weight) * image_scores + weight * reference_scores
            if labels is None and not torch.compiler.is_compiling():  # (training reports a NaN loss with its step)
                _check_finite_outputs(pixel_values, image_scores, anomaly_maps)
            losses: dict[str, torch.Tensor] = {}
            if labels is not None:
                pixel_valid = self._pixel_validity(labels, masks, mask_valid, allow_missing_masks)
                targets = self._pixel_targets(labels, masks, size, allow_missing_masks)
                losses = self._objective(labels, targets, static_maps, prior_maps, scores, pixel_valid)
        output = FAPromptOutput(
            loss=losses.get("loss"),
            image_scores=image_scores,
            anomaly_maps=anomaly_maps,
            raw_anomaly_maps=raw_anomaly_maps,
            static_patch_scores=scores.static_patch_scores,
            prior_patch_scores=scores.prior_patch_scores,
            image_text_scores=scores.image_text_scores,
            static_text_features=scores.static_text_features,
            prior_text_features=scores.prior_text_features,
            abnormal_text_features=scores.abnormal_text_features,
            prior_bias=scores.prior_bias,
            prior_patch_indices=scores.prior_patch_indices,
            image_embeds=image_embeds,
            patch_embeds=patch_embeds,
            loss_local=losses.get("loss_local"),
            loss_global=losses.get("loss_global"),
            loss_orthogonality=losses.get("loss_orthogonality"),
            loss_prior=losses.get("loss_prior"),
            reference_maps=reference_maps,
            reference_scores=reference_scores,
        )
        return output if return_dict else output.to_tuple()

    def _score(
        self,
        image_embeds: torch.Tensor,
        patch_embeds: torch.Tensor,
        static_prompts: FAPromptStaticPrompts,
        size: tuple[int, int],
    ) -> _Scores:
        """Patch and image scores against the static and the prior-conditioned prompts (method §4-§5).

        Args:
            image_embeds: Normalised image embeddings (B, D).
            patch_embeds: Normalised V-V tokens, class token first (B, 1 + G, D).
            static_prompts: The image-independent prompt side.
            size: The input (height, width), for the patch grid.

        Returns:
            The scores and the prompt features they came from.
        """
        config = self.config
        temperature = config.temperature
        patch_tokens = patch_embeds[:, 1:]
        normal_feature, abnormal_features, abnormal_prompt_embeds = static_prompts
        static_text = F.normalize(torch.stack([normal_feature, abnormal_features.mean(0)]), dim=-1)
        with _full_precision(patch_embeds.device):
            static_scores = (patch_tokens @ static_text.T / temperature).softmax(-1)

        prior_indices = self.select_prior_patches(static_scores[..., 1])
        prior_input = patch_tokens.gather(1, prior_indices[..., None].expand(-1, -1, patch_tokens.shape[-1]))
        prior_bias = self.prompt_learner.prior(prior_input.to(self.prompt_learner.prior.fc1.weight.dtype)).float()
        prior_abnormal = self.prior_abnormal_features(prior_bias, abnormal_prompt_embeds)
        with _full_precision(patch_embeds.device):
            prior_text = F.normalize(
                torch.stack([normal_feature.expand_as(prior_abnormal), prior_abnormal], dim=1), dim=-1
            )
            prior_scores = (torch.einsum("bgd,bcd->bgc", patch_tokens, prior_text) / temperature).softmax(-1)
            image_logits = torch.einsum("bd,bcd->bc", image_embeds, prior_text) / temperature
            image_text_scores = image_logits.softmax(-1)[:, 1]
            patch_max = (2 * static_scores[..., 1].amax(1) + prior_scores[..., 1].amax(1)) / 3
            image_scores = 0.5 * (image_text_scores + patch_max)
        patch_size = config.clip_config.vision_config.patch_size
        return _Scores(
            grid=(size[0] // patch_size, size[1] // patch_size),
            static_patch_scores=static_scores,
            prior_patch_scores=prior_scores,
            image_logits=image_logits,
            image_text_scores=image_text_scores,
            image_scores=image_scores,
            static_text_features=static_text,
            prior_text_features=prior_text,
            abnormal_text_features=abnormal_features,
            prior_bias=prior_bias,
            prior_patch_indices=prior_indices,
        )

    def _anomaly_maps(
        self, scores: _Scores, size: tuple[int, int], sigma: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pixel maps from patch scores (method §5), in float32.

        Returns:
            ``(static_maps (B, 2, H, W), prior_maps (B, 2, H, W), raw_anomaly_maps (B, H, W),
            anomaly_maps (B, H, W))``: the two prompt sets' upsampled [normal, abnormal] maps, their mean anomaly
            map, and that map smoothed with ``sigma``.
        """
        static_maps = self._upsample_scores(scores.static_patch_scores, scores.grid, size)
        prior_maps = self._upsample_scores(scores.prior_patch_scores, scores.grid, size)
        raw = (static_maps[:, 1] + 1 - static_maps[:, 0] + prior_maps[:, 1] + 1 - prior_maps[:, 0]) / 4
        return static_maps, prior_maps, raw, gaussian_smooth(raw, sigma, self.config.gaussian_truncate)

    def _fuse_reference_maps(
        self,
        distances: torch.Tensor,
        grid: tuple[int, int],
        raw_text_maps: torch.Tensor,
        text_maps: torch.Tensor,
        sigma: float,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Fuse the text maps with the reference distances, upsampled and smoothed as the text maps are.

        Args:
            distances: Each patch's distance from the nearest reference patch (B, G).
            grid: The patch grid (rows, columns).
            raw_text_maps: The text anomaly maps before smoothing (B, H, W).
            text_maps: The same maps smoothed (B, H, W).
            sigma: Smoothing in pixels.

        Returns:
            ``(raw fused maps, smoothed fused maps, smoothed reference maps)``, each (B, H, W). Smoothing is linear,
            so the smoothed fusion is the fusion of the smoothed maps.
        """
        raw_reference = self._upsample_scores(distances[..., None], grid, tuple(raw_text_maps.shape[-2:]))[:, 0]
        reference_maps = gaussian_smooth(raw_reference, sigma, self.config.gaussian_truncate)
        weight = self.config.reference_map_weight
        return (
            (1 - weight) * raw_text_maps + weight * raw_reference,
            (1 - weight) * text_maps + weight * reference_maps,
            reference_maps,
        )

    @staticmethod
    def _upsample_scores(scores: torch.Tensor, grid: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
        """Patch scores (B, G, C) -> bilinear maps (B, C, H, W) (row-major patch order).

        Equal to ``F.interpolate(..., mode="bilinear", align_corners=False)``, written as two matrix products so
        that its backward is a matrix product too (the interpolation's own backward scatters with atomics).
        """
        maps = scores.transpose(1, 2).reshape(scores.shape[0], scores.shape[-1], *grid)
        rows = bilinear_resize_matrix(size[0], grid[0], maps.device, maps.dtype)
        columns = bilinear_resize_matrix(size[1], grid[1], maps.device, maps.dtype)
        return rows @ maps @ columns.T

    @staticmethod
    def _pixel_validity(
        labels: torch.Tensor, masks: torch.Tensor | None, mask_valid: torch.Tensor | None, allow_missing_masks: bool
    ) -> torch.Tensor | None:
        """Which images (B,) have pixel ground truth for the local losses: None means all of them.

        Raises:
            ValueError: An anomalous image without a mask (``mask_valid`` False) and not ``allow_missing_masks``.
        """
        labels = labels.reshape(-1)
        if allow_missing_masks:
            normal = labels == 0
            pixel_valid = normal if masks is None else torch.ones_like(normal)
            if mask_valid is not None:
                pixel_valid = pixel_valid & mask_valid.reshape(-1).to(normal.device).bool()
            return pixel_valid
        if mask_valid is not None and bool((labels.bool() & ~mask_valid.reshape(-1).to(labels.device).bool()).any()):
            raise ValueError(
                "An anomalous image in the batch has no ground-truth mask (mask_valid is False): the training "
                "objective needs one; give masks for every anomalous image, drop those rows, or pass "
                "allow_missing_masks=True (--allow_missing_masks) to train their image-level losses only."
            )
        return None

    @staticmethod
    def _pixel_targets(
        labels: torch.Tensor, masks: torch.Tensor | None, size: tuple[int, int], allow_missing_masks: bool = False
    ) -> torch.Tensor:
        """Binary pixel targets (B, H, W) from checked masks (B, H, W), or zeros without masks.

        Zeros stand for the masks of normal images; for anomalous images only with ``allow_missing_masks`` (whose
        pixel losses then leave them out).
        """
        labels = labels.reshape(-1)
        if masks is None:
            if not allow_missing_masks and bool((labels != 0).any()):
                raise ValueError(
                    "labels mark anomalous images but no masks were given: the training objective needs a "
                    "ground-truth mask (B, H, W) for every anomalous image (pass masks=..., e.g. from the processor), "
                    "or allow_missing_masks=True to train their image-level losses only."
                )
            return torch.zeros(labels.shape[0], *size, device=labels.device)
        return (masks > 0.5).float()

    def _objective(
        self,
        labels: torch.Tensor,
        targets: torch.Tensor,
        static_maps: torch.Tensor,
        prior_maps: torch.Tensor,
        scores: _Scores,
        pixel_valid: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The training objective of method §6, term by term (all in float32).

        ``pixel_valid`` (B,) bool, when given, limits the local (pixel-level) losses to those images: the focal loss
        averages over their pixels, the Dice losses over them; with none, ``loss_local`` is 0. None, or all True,
        is the reference objective, computed exactly as without it.
        """
        config = self.config
        image_logits, image_scores = scores.image_logits, scores.image_scores
        labels = labels.reshape(-1).to(image_logits.device)
        gamma = config.focal_gamma

        def map_loss(maps: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            return (
                focal_loss(maps, targets, gamma) + dice_loss(maps[:, 1], targets) + dice_loss(maps[:, 0], 1 - targets)
            )

        if pixel_valid is None or bool(pixel_valid.all()):
            loss_local = map_loss(static_maps, targets) + config.prior_map_loss_weight * map_loss(prior_maps, targets)
        elif not bool(pixel_valid.any()):
            loss_local = static_maps.new_zeros(())
        else:
            keep = pixel_valid.to(static_maps.device)
            loss_local = map_loss(static_maps[keep], targets[keep]) + config.prior_map_loss_weight * map_loss(
                prior_maps[keep], targets[keep]
            )
        loss_global = F.cross_entropy(image_logits, labels.long()) + binary_focal_loss(image_scores, labels, gamma)
        loss_orthogonality = orthogonality_loss(scores.abnormal_text_features)
        loss_prior = prior_loss(scores.prior_bias, labels)
        loss = (
            loss_local
            + config.global_loss_weight * loss_global
            + config.orthogonality_loss_weight * loss_orthogonality
            + config.prior_loss_weight * loss_prior
        )
        return {
            "loss": loss,
            "loss_local": loss_local,
            "loss_global": loss_global,
            "loss_orthogonality": loss_orthogonality,
            "loss_prior": loss_prior,
        }
