"""The maths of the objective against references."""

import pytest
import torch

from nst_core import losses

pytestmark = pytest.mark.numerics  # make test-cpus runs these under other CPUs' kernels too


def test_gram_matches_einsum():
    f = torch.randn(2, 8, 5, 7, dtype=torch.float64)
    ref = torch.einsum("bchw,bdhw->bcd", f, f) / (5 * 7)
    torch.testing.assert_close(losses.gram(f), ref)


def test_gram_gradient_matches_autograd_of_the_plain_formula():
    f = torch.randn(2, 5, 3, 4, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(losses.gram, (f,))
    w = torch.randn(2, 5, 5, dtype=torch.float64)  # not symmetric: both halves of the formula count
    (losses.gram(f) * w).sum().backward()
    ours = f.grad.clone()
    f.grad = None
    (torch.einsum("bchw,bdhw->bcd", f, f) / 12 * w).sum().backward()
    torch.testing.assert_close(ours, f.grad)


def test_gram_is_symmetric_and_size_normalised():
    f = torch.rand(1, 4, 6, 6)
    g = losses.gram(f)
    torch.testing.assert_close(g, g.transpose(1, 2))
    # Tiling the same feature map 2x2 keeps the statistics, so the normalised Gram is unchanged.
    torch.testing.assert_close(losses.gram(f.repeat(1, 1, 2, 2)), g)


def test_losses_are_zero_when_input_equals_target():
    f = torch.rand(1, 16, 9, 9) + 0.1
    assert losses.content_loss(f, f).item() == 0
    assert losses.style_loss(f, losses.gram(f)).item() == 0
    assert losses.tv_loss(torch.full((1, 3, 8, 8), 0.3)).item() == 0


def test_losses_are_positive_otherwise():
    f, g = torch.rand(1, 16, 9, 9), torch.rand(1, 16, 9, 9)
    assert losses.content_loss(f, g) > 0
    assert losses.style_loss(f, losses.gram(g)) > 0
    assert losses.tv_loss(torch.rand(1, 3, 8, 8)) > 0


def test_style_loss_ignores_where_things_are():
    torch.manual_seed(0)
    f = torch.rand(1, 16, 12, 12)
    target = losses.gram(torch.rand(1, 16, 12, 12))
    perm = torch.randperm(144)
    shuffled = f.reshape(1, 16, 144)[:, :, perm].reshape(1, 16, 12, 12)
    assert not torch.equal(f, shuffled)
    torch.testing.assert_close(losses.style_loss(shuffled, target), losses.style_loss(f, target))
    # ...while the content loss does care.
    assert losses.content_loss(shuffled, f) > 0


def test_losses_are_relative_to_the_target():
    f, t = torch.rand(1, 8, 6, 6), torch.rand(1, 8, 6, 6)
    torch.testing.assert_close(losses.content_loss(f * 3, t * 3), losses.content_loss(f, t))
    assert abs(losses.style_loss(torch.zeros(1, 8, 6, 6), losses.gram(t)).item() - 1.0) < 1e-5


def test_blended_gram_target():
    a, b = torch.ones(1, 2, 2), torch.zeros(1, 2, 2)
    torch.testing.assert_close(losses.weighted_gram_target([a, b], [3, 1]), torch.full((1, 2, 2), 0.75))
