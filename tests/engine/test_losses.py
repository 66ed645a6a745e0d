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


def test_adaptive_wing_matches_the_paper_formula_and_is_smooth_at_theta():
    import math

    from dunet.engine.losses import AWING_THETA, adaptive_wing

    # Wang et al. eq. (4) near the target, for background (y = 0) and foreground (y = 1) pixels.
    for y, error in ((0.0, 0.25), (1.0, -0.3), (0.5, 0.1)):
        expected = 14.0 * math.log(1 + abs(error) ** (2.1 - y))
        assert math.isclose(adaptive_wing(torch.tensor(y + error), torch.tensor(y)).item(), expected, rel_tol=1e-5)
    assert adaptive_wing(torch.tensor(0.7), torch.tensor(0.7)) == 0
    # Continuous with a continuous slope where the log part hands over to the linear part.
    for y in (0.0, 0.3, 1.0):
        values, slopes = [], []
        for diff in (AWING_THETA - 1e-4, AWING_THETA + 1e-4):
            pred = torch.tensor(y + diff, dtype=torch.float64, requires_grad=True)
            loss = adaptive_wing(pred, torch.tensor(y, dtype=torch.float64))
            loss.backward()
            values.append(loss.item())
            slopes.append(pred.grad.item())
        assert abs(values[0] - values[1]) < 1e-2 and abs(slopes[0] - slopes[1]) < 1e-2 * abs(slopes[0])


def test_awing_head_loss_weighs_the_dilated_foreground_and_masks_unlabelled_landmarks():
    from dunet.engine.losses import adaptive_wing

    target = torch.zeros(1, 2, 6, 6)
    target[0, :, 2, 2] = 1.0
    pred = torch.full_like(target, 0.1)
    pred[0, 1] = 50.0  # unlabelled: must not count
    loss = head_loss(pred, target, torch.tensor([[1.0, 0.0]]), "regression", "awing")
    per_pixel = adaptive_wing(pred[0, 0], target[0, 0])
    weights = torch.ones(6, 6)
    weights[1:4, 1:4] = 11.0  # the peak pixel and its 3x3 neighbourhood
    assert torch.isclose(loss, (per_pixel * weights).mean())
    mse = head_loss(pred, target, torch.tensor([[1.0, 0.0]]), "regression")
    assert torch.isclose(mse, ((pred[0, 0] - target[0, 0]) ** 2).mean())
    assert torch.isclose(total_loss((pred, pred), target, torch.tensor([[1.0, 0.0]]), ["regression"] * 2, "awing"),
                         2 * loss)
