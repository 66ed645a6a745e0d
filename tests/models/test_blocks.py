import pytest
import torch
import torch.nn.functional as F

from dunet.models.blocks import max_pool2x2


@pytest.mark.parametrize("channels_last", [False, True])
def test_max_pool2x2_matches_max_pool2d_values_and_gradients(channels_last):
    torch.manual_seed(0)
    x = torch.relu(torch.randn(2, 5, 8, 12)).round()  # ReLU zeros and rounding: many ties in a window
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    ours, reference = x.clone().requires_grad_(), x.clone().requires_grad_()
    grad = torch.randn(2, 5, 4, 6)
    out = max_pool2x2(ours)
    (out * grad).sum().backward()
    (F.max_pool2d(reference, 2) * grad).sum().backward()
    assert torch.equal(out, F.max_pool2d(x, 2))
    assert torch.equal(ours.grad, reference.grad)
    assert out.is_contiguous(memory_format=torch.channels_last) == channels_last


def test_max_pool2x2_keeps_one_byte_per_output_for_backward():
    saved = []
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        max_pool2x2(x)
    assert [(t.dtype, t.numel()) for t in saved] == [(torch.uint8, 2 * 3 * 4 * 4)]


def test_max_pool2x2_without_grad_is_plain_max_pool():
    x = torch.randn(1, 2, 4, 4)
    with torch.no_grad():
        assert torch.equal(max_pool2x2(x.requires_grad_()), F.max_pool2d(x, 2))
