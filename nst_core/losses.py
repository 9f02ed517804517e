"""The terms of the Gatys et al. objective as small pure functions of feature tensors."""

from __future__ import annotations

import torch
from torch import Tensor


class _OuterProduct(torch.autograd.Function):
    """F F^T with a one-matmul backward: d(F F^T)/dF . dG = (dG + dG^T) F.

    Autograd's own backward treats the two operands separately (two large matmuls plus a C x HW
    add); this is about a quarter of the whole objective's overhead over a bare VGG19 pass.
    """

    @staticmethod
    def forward(ctx, f: Tensor) -> Tensor:
        ctx.save_for_backward(f)
        return f @ f.transpose(1, 2)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (f,) = ctx.saved_tensors
        return (grad + grad.transpose(1, 2)) @ f


def gram(features: Tensor) -> Tensor:
    """Gram matrices (B, C, C) of features (B, C, H, W), divided by the number of positions H*W.

    Gatys et al. use the raw sum F F^T and divide the loss by 4 N^2 M^2 (M = H*W); dividing G by M here
    is the same up to a constant, and makes the style weight independent of the image size.
    """
    b, c, h, w = features.shape
    return _OuterProduct.apply(features.reshape(b, c, h * w)) / (h * w)


def content_loss(features: Tensor, target: Tensor) -> Tensor:
    """Squared feature difference relative to the target's energy: about 1 for an unrelated image.

    Gatys et al. use the plain sum of squares; dividing by the target's mean square (a constant per
    target) keeps the same gradients up to scale and makes the weights mean the same for every photo.
    """
    return (features - target).pow(2).mean() / (target.pow(2).mean() + 1e-8)


def style_loss(features: Tensor, target_gram: Tensor) -> Tensor:
    """Squared Gram difference relative to the target Gram's energy: 1 when the features are zero.

    Where we differ from the paper: with raw Gram errors the layers' losses span four orders of
    magnitude (relu4_1 drowns out relu1_1 and relu5_1), so "equal layer weights" would not be equal at
    all. Normalising each layer by its target makes the per-layer weights mean what they say, for any
    painting; the Gram itself is divided by H*W, so none of this depends on the image size.
    """
    return (gram(features) - target_gram).pow(2).mean() / (target_gram.pow(2).mean() + 1e-8)


def tv_loss(image: Tensor) -> Tensor:
    """Total variation: mean squared difference of neighbouring pixels (an image prior against noise)."""
    dx = image[..., :, 1:] - image[..., :, :-1]
    dy = image[..., 1:, :] - image[..., :-1, :]
    return dx.pow(2).mean() + dy.pow(2).mean()


def weighted_gram_target(grams: list[Tensor], blend: list[float]) -> Tensor:
    """Blend the Gram targets of several style images (weights are normalised to sum to 1)."""
    total = float(sum(blend))
    return sum(g * (w / total) for g, w in zip(grams, blend, strict=True))


def guided_gram(features: Tensor, mask: Tensor) -> Tensor:
    """The Gram matrix of the features inside a region: Gatys, Ecker, Bethge, Hertzmann and Shechtman, "Controlling
    Perceptual Factors in Neural Style Transfer" (CVPR 2017), spatial control by guided Gram matrices. `mask` is
    the region at this layer's grid (1, 1, H, W) in [0, 1]; the features are weighted by it and the Gram divided
    by the region's size (the sum of its squared weights), so that a mask of ones gives gram(features) exactly."""
    b, c, h, w = features.shape
    weighted = (features * mask).reshape(b, c, h * w)
    return _OuterProduct.apply(weighted) / (mask.pow(2).sum() + 1e-8)


def masked_pixel_loss(image: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """Squared pixel difference where `weight` is 1 (the photo kept there), relative to the target's energy."""
    return (weight * (image - target).pow(2)).mean() / (target.pow(2).mean() + 1e-8)
