# Copyright 2026 The faprompt-hf developers. SPDX-License-Identifier: Apache-2.0
"""The training objective's terms against direct, element-by-element references."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from faprompt_hf.loss_faprompt import binary_focal_loss, dice_loss, focal_loss, orthogonality_loss, prior_loss


def test_focal_loss_equals_the_clamped_one_hot_formula():
    generator = torch.Generator().manual_seed(0)
    probabilities = torch.softmax(torch.randn(2, 3, 5, 4, generator=generator), dim=1)
    targets = torch.randint(0, 3, (2, 5, 4), generator=generator)
    total = 0.0
    for b in range(2):
        for i in range(5):
            for j in range(4):
                pt = 1e-5
                for c in range(3):
                    weight = 1 - 1e-5 if c == targets[b, i, j] else 1e-5 / 2
                    pt += weight * probabilities[b, c, i, j].item()
                total += -((1 - pt) ** 2) * math.log(pt)
    assert abs(focal_loss(probabilities, targets).item() - total / 40) < 1e-6


def test_focal_with_gamma_zero_is_cross_entropy_of_probabilities():
    probabilities = torch.tensor([[[[0.9]], [[0.1]]]])
    targets = torch.zeros(1, 1, 1, dtype=torch.long)
    expected = -math.log((1 - 1e-5) * 0.9 + 1e-5 * 0.1 + 1e-5)
    assert abs(focal_loss(probabilities, targets, gamma=0).item() - expected) < 1e-6


def test_dice_loss_of_identical_masks_is_about_zero_and_of_disjoint_is_about_one():
    mask = torch.zeros(2, 8, 8)
    mask[:, :4] = 1
    assert dice_loss(mask, mask).item() < 0.02
    assert dice_loss(mask, 1 - mask).item() > 0.95
    expected = 1 - ((2 * 0 + 1) / (32 + 32 + 1) + (2 * 32 + 1) / (32 + 32 + 1)) / 2
    assert abs(dice_loss(torch.stack([mask[0], mask[1]]), torch.stack([1 - mask[0], mask[1]])).item() - expected) < 1e-6


def test_binary_focal_loss_formula():
    logits, targets = torch.tensor([0.3, 0.8]), torch.tensor([0.0, 1.0])
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    expected = ((1 - torch.exp(-bce)) ** 2 * bce).mean()
    torch.testing.assert_close(binary_focal_loss(logits, targets), expected)
    torch.testing.assert_close(binary_focal_loss(logits, targets, gamma=0), bce.mean())


def test_orthogonality_loss_sums_each_pair_once():
    features = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    expected = 0 + 1 / math.sqrt(2) + 1 / math.sqrt(2)
    assert abs(orthogonality_loss(features).item() - expected) < 1e-6
    assert orthogonality_loss(features[:1]).item() == 0


def test_prior_loss_only_counts_normal_images():
    bias = torch.tensor([[1.0, 3.0], [10.0, 10.0], [2.0, 2.0]])
    assert prior_loss(bias, torch.tensor([0, 1, 0])).item() == (1 + 9) / 2 + 4
