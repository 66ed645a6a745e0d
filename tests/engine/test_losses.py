import torch

from dunet.data.heatmaps import DISK_LEVEL, encode_gaussian
from dunet.engine.losses import head_loss, total_loss


def test_regression_is_masked_mse():
    target = torch.zeros(1, 2, 4, 4)
    pred = torch.ones(1, 2, 4, 4)
    pred[0, 1] = 100.0  # unlabelled landmark: must not count
    loss = head_loss(pred, target, torch.tensor([[1.0, 0.0]]), "regression")
    assert torch.isclose(loss, torch.tensor(1.0))


def test_detection_is_bce_on_disks():
    target = torch.zeros(1, 1, 3, 3)
    target[0, 0, 1, 1] = 1.0
    target[0, 0, 0, 0] = DISK_LEVEL / 2  # outside the disk
    logits = torch.zeros(1, 1, 3, 3)
    loss = head_loss(logits, target, torch.ones(1, 1), "detection")
    assert torch.isclose(loss, torch.log(torch.tensor(2.0)))  # BCE of p=0.5 against any 0/1 label


def test_detection_disk_is_two_sigma_around_the_landmark():
    """The part-detection disk of Bulat & Tzimiropoulos, radius 2 sigma, cut from the Gaussian target."""
    target = encode_gaussian(torch.tensor([[20.3, 18.7]]), torch.ones(1), 40, 1.5)[0]
    ys, xs = torch.meshgrid(torch.arange(40.0), torch.arange(40.0), indexing="ij")
    assert torch.equal(target >= DISK_LEVEL, (xs - 20.3) ** 2 + (ys - 18.7) ** 2 <= (2 * 1.5) ** 2)


def test_heads_are_summed():
    target = torch.zeros(1, 1, 2, 2)
    outs = (torch.ones(1, 1, 2, 2), 2 * torch.ones(1, 1, 2, 2))
    loss = total_loss(outs, target, torch.ones(1, 1), ["regression", "regression"])
    assert torch.isclose(loss, torch.tensor(5.0))
