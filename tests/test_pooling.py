"""SPAM / GMP / GAP against independent closed forms (paper Eq. 1-3)."""
import numpy as np
import pytest
import torch

from runtime.scores import pool_cams
from training.pooling import GlobalCamPool, parse_kernels, spam_pool


def _eq3_numpy(cam: np.ndarray, kernels) -> tuple[float, np.ndarray]:
    """SPAM's value and Eq. 3's gradient for one (N, M) map, with explicit loops over windows."""
    n, m = cam.shape
    value, grad = 0.0, np.zeros_like(cam)
    for k in kernels:
        kh, kw = (n, m) if k == "N" else (min(k, n), min(k, m))
        best, where = -np.inf, None
        for y in range(n - kh + 1):
            for x in range(m - kw + 1):
                mean = cam[y : y + kh, x : x + kw].mean()
                if mean > best:
                    best, where = mean, (y, x)
        value += best / len(kernels)
        y, x = where
        grad[y : y + kh, x : x + kw] += 1.0 / (kh * kw) / len(kernels)  # K_p^-2 / P on the winning window
    return value, grad


@pytest.mark.parametrize("kernels", [(1, 2, 5, "N"), (1, 3), (2, 4, 8, "N"), (7,)])
@pytest.mark.parametrize("shape", [(9, 9), (13, 11), (4, 6)])
def test_spam_forward_and_gradient_equal_eq3(kernels, shape):
    rng = np.random.default_rng(sum(shape) + len(kernels))
    cams = rng.normal(size=(3, 2) + shape)  # no ties with probability one
    tensor = torch.tensor(cams, requires_grad=True)
    upstream = torch.tensor(rng.normal(size=(3, 2)))  # g, a different one per map
    pooled = spam_pool(tensor, kernels)
    (pooled * upstream).sum().backward()
    for b in range(3):
        for c in range(2):
            value, grad = _eq3_numpy(cams[b, c], kernels)
            assert pooled[b, c].item() == pytest.approx(value, abs=1e-12)
            np.testing.assert_allclose(tensor.grad[b, c].numpy(), upstream[b, c].item() * grad, atol=1e-12)


def test_spam_steps_k1_and_kn_are_gmp_and_gap():
    cams = torch.randn(4, 3, 10, 12, dtype=torch.float64)
    gmp = GlobalCamPool("gmp")(cams)
    gap = GlobalCamPool("gap")(cams)
    torch.testing.assert_close(spam_pool(cams, (1,)), gmp)
    torch.testing.assert_close(spam_pool(cams, ("N",)), gap)
    torch.testing.assert_close(spam_pool(cams, (100,)), gap)  # a kernel larger than the map is clamped
    torch.testing.assert_close(gmp, cams.flatten(2).max(-1).values)
    torch.testing.assert_close(gap, cams.flatten(2).mean(-1))


@pytest.mark.parametrize("mode", ["gmp", "gap", "spam"])
def test_numpy_pooling_matches_training_pooling(mode):
    """The runtime's image scores re-apply the model's pooling: they must agree exactly."""
    cams = torch.randn(5, 4, 11, 9, dtype=torch.float64)
    torch_value = GlobalCamPool(mode, (1, 2, 5, "N"))(cams).numpy()
    np.testing.assert_allclose(pool_cams(cams.numpy(), mode, (1, 2, 5, "N")), torch_value, atol=1e-12)


def test_kernel_parsing():
    assert parse_kernels("1, 2,5,n") == (1, 2, 5, "N")
    for bad in ("", "0", "two", "1,-2"):
        with pytest.raises(ValueError):
            parse_kernels(bad)
    with pytest.raises(ValueError, match="pooling must be one of"):
        GlobalCamPool("max")
