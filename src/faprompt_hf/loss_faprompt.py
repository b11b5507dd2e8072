# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""FAPrompt's training objective (method §6) as pure tensor functions."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "binary_focal_loss",
    "dice_loss",
    "focal_loss",
    "orthogonality_loss",
    "prior_loss",
]

_LABEL_SMOOTHING = 1e-5


def focal_loss(probabilities: torch.Tensor, targets: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Multi-class focal loss on probabilities, averaged over every pixel of the batch.

    One-hot targets are clamped to ``[1e-5 / (C - 1), 1 - 1e-5]`` and ``pt = sum(onehot * p) + 1e-5``, as in the
    reference implementation; there is no class weighting.

    Args:
        probabilities: Class probabilities (B, C, H, W), summing to 1 over C.
        targets: Integer class of each pixel (B, H, W), values in ``[0, C)``.
        gamma: Focusing parameter.

    Returns:
        The scalar loss ``mean(-(1 - pt) ** gamma * log(pt))``.
    """
    num_classes = probabilities.shape[1]
    # sum(clamped_onehot * p) without materialising the one-hot tensor
    target_probability = probabilities.gather(1, targets.long().unsqueeze(1)).squeeze(1)
    other_probability = probabilities.sum(1) - target_probability
    pt = (
        (1.0 - _LABEL_SMOOTHING) * target_probability
        + _LABEL_SMOOTHING / (num_classes - 1) * other_probability
        + _LABEL_SMOOTHING
    )
    return (-((1 - pt) ** gamma) * pt.log()).mean()


def dice_loss(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Soft Dice loss with smoothing 1, averaged over the images of the batch.

    Args:
        inputs: Predicted foreground probability (B, H, W).
        targets: Binary target (B, H, W).

    Returns:
        ``1 - mean_b (2 * sum(x * t) + 1) / (sum(x) + sum(t) + 1)``.
    """
    inputs, targets = inputs.flatten(1), targets.flatten(1).to(inputs.dtype)
    coefficient = (2 * (inputs * targets).sum(1) + 1) / (inputs.sum(1) + targets.sum(1) + 1)
    return 1 - coefficient.mean()


def binary_focal_loss(logits: torch.Tensor, targets: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Binary focal loss that treats its input as logits (the reference applies it to the image score).

    Args:
        logits: (B,) values passed through a sigmoid inside binary cross-entropy.
        targets: (B,) labels in {0, 1}.
        gamma: Focusing parameter.

    Returns:
        ``mean((1 - exp(-bce)) ** gamma * bce)``.
    """
    bce = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="none")
    return ((1 - torch.exp(-bce)) ** gamma * bce).mean()


def orthogonality_loss(abnormal_text_features: torch.Tensor) -> torch.Tensor:
    """Sum of ``|cos|`` over every unordered pair of abnormal prompt features.

    Args:
        abnormal_text_features: The K static abnormal prompt features (K, D), unnormalised.

    Returns:
        ``sum_{i<j} |cos(t_i, t_j)|`` (0 for K = 1).
    """
    normalized = F.normalize(abnormal_text_features, dim=-1)
    cosine = normalized @ normalized.T
    pairs = torch.triu_indices(cosine.shape[0], cosine.shape[1], offset=1, device=cosine.device)
    return cosine[pairs[0], pairs[1]].abs().sum()


def prior_loss(prior_bias: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Penalty that keeps the prior silent on normal images: ``sum over normal b of mean(omega_b ** 2)``.

    Args:
        prior_bias: The prior's output per image (B, Dt).
        labels: (B,) labels in {0, 1}.

    Returns:
        The scalar penalty.
    """
    normal = (labels == 0).to(prior_bias.dtype)
    return (prior_bias.pow(2).mean(-1) * normal).sum()
