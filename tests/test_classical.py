import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage as ndi

from diffjax import classical, data, degrade


@pytest.fixture(scope="module")
def digits():
    return data.mnist_sample("test").images[::100][:4].astype(np.float32) / 255.0


@pytest.mark.parametrize("t", [0.5, 2.0])
def test_heat_equals_gaussian_filter_of_sigma_sqrt_2t(t):
    x = np.asarray(jax.random.uniform(jax.random.PRNGKey(0), (1, 40, 40, 1)))
    ours = np.asarray(classical.heat(x, t))[0, ..., 0]
    ref = ndi.gaussian_filter(x[0, ..., 0], np.sqrt(2 * t), mode="reflect", truncate=6.0)
    # The DCT solves the continuous heat equation; a sampled Gaussian differs by O(e^{-2 pi^2 sigma^2}).
    np.testing.assert_allclose(ours, ref, atol=2e-2 if t < 1 else 2e-3)


@pytest.mark.parametrize("diffusivity", sorted(classical.DIFFUSIVITIES))
def test_perona_malik_preserves_mean_and_lowers_total_variation(digits, diffusivity):
    noisy = degrade.degrade("gaussian", 0.2, jax.random.PRNGKey(1), jnp.asarray(digits)).y
    out = classical.perona_malik(noisy, 0.2, steps=20, dt=0.25, diffusivity=diffusivity)
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), noisy.mean(axis=(1, 2, 3)), atol=1e-5)
    tv = lambda u: jnp.abs(jnp.diff(u, axis=1)).sum() + jnp.abs(jnp.diff(u, axis=2)).sum()  # noqa: E731
    assert float(tv(out)) < 0.6 * float(tv(noisy))


def test_perona_malik_is_differentiable_in_kappa(digits):
    noisy = degrade.degrade("gaussian", 0.2, jax.random.PRNGKey(1), jnp.asarray(digits)).y
    loss = lambda kappa: jnp.mean((classical.perona_malik(noisy, kappa, steps=5) - digits) ** 2)  # noqa: E731
    g = jax.grad(loss)(0.2)
    eps = 1e-3
    fd = (loss(0.2 + eps) - loss(0.2 - eps)) / (2 * eps)
    assert np.isfinite(g) and abs(float(g) - float(fd)) < 1e-2 * abs(float(fd)) + 1e-6


def test_harmonic_inpainting_keeps_known_pixels_and_fills_linear_ramps_exactly():
    ramp = jnp.tile(jnp.linspace(0, 1, 16)[None, None, :, None], (1, 16, 1, 1))
    mask = degrade.box_mask(ramp.shape, 6)
    out = classical.harmonic_inpaint(ramp * mask, mask, iterations=2000)
    np.testing.assert_allclose(out, ramp, atol=1e-3)  # a linear function is harmonic


@pytest.mark.parametrize("name", sorted(classical.METHODS))
def test_every_registered_method_restores_a_tiny_batch(digits, name):
    method = classical.METHODS[name]
    kind = method.applies_to[0]
    obs = degrade.degrade(kind, degrade.DEFAULT_LEVELS[kind][0], jax.random.PRNGKey(2), jnp.asarray(digits[:2]))
    out = classical.restore(name, obs, **method.first_params())
    assert out.shape == digits[:2].shape and np.isfinite(np.asarray(out)).all()
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0


def test_unknown_method_and_wrong_degradation_rejected(digits):
    with pytest.raises(ValueError, match="bm3d"):
        classical.get("gaussian_process")
    obs = degrade.degrade("blur", 1.0, jax.random.PRNGKey(0), jnp.asarray(digits))
    with pytest.raises(ValueError, match="does not apply"):
        classical.restore("median", obs, size=3)


def test_bm3d_without_its_package_is_left_out_of_the_defaults_and_named_when_asked_for(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "bm3d" else real(n, *a))
    assert "bm3d" not in classical.available() and "bm3d_anscombe" not in classical.available()
    assert "nl_means" in classical.available()
    with pytest.raises(ValueError, match=r"needs the 'bm3d' package: pip install 'diffjax\[bm3d\]'"):
        classical.get("bm3d")


def _tv_gap(x, p, q, y, lam, kind, level, fidelity):
    """Primal-dual gap of min_{0<=x<=1} G(x) + F(K x), an independent certificate of optimality:
    P(x) - D(p, q) >= 0, zero exactly at a saddle point (Chambolle & Pock 2011, Sec. 2)."""
    x, p, q, y = (np.asarray(a, np.float64) for a in (x, p, q, y))
    tv = float(classical.total_variation(jnp.asarray(x)).sum())
    kt_p = np.asarray(classical.gradient_adjoint(jnp.asarray(p)), np.float64)
    if fidelity == "l2":
        op = degrade.operator(kind, level) if kind != "identity" else None
        ax = np.asarray(op(jnp.asarray(x, jnp.float32))) if op else x
        at_q = np.asarray(op.adjoint(jnp.asarray(q, jnp.float32))) if op else q
        primal = lam * tv + 0.5 * np.sum((ax - y) ** 2)
        dual = -(0.5 * np.sum(q * q) + np.sum(q * y)) - np.sum(np.maximum(-(kt_p + at_q), 0.0))
    else:
        primal = np.abs(x - y).sum() + lam * tv
        w = -kt_p  # G*(w) = sum max over x in {0, y, 1} of w x - |x - y|
        dual = -np.sum(np.maximum.reduce([-y, w * y, w - (1 - y)]))
    return primal - dual, primal


@pytest.mark.parametrize("kind, level, fidelity, lam", [("blur", 1.0, "l2", 0.01), ("downsample", 2, "l2", 0.01),
                                                        ("identity", 0.0, "l1", 0.8)])
def test_tv_primal_dual_reaches_a_small_gap_and_agrees_with_a_longer_run(digits, kind, level, fidelity, lam):
    x = jnp.asarray(digits[:2])
    if fidelity == "l1":
        y = degrade.degrade("salt_pepper", 0.1, jax.random.PRNGKey(3), x).y
    else:
        y = degrade.gaussian_noise(jax.random.PRNGKey(3), degrade.operator(kind, level)(x), 0.01)
    out, p, q = classical.tv_pdhg(y, lam, kind=kind, level=level, fidelity=fidelity, iterations=3000)
    gap, primal = _tv_gap(out, p, q, y, lam, kind, level, fidelity)
    assert 0 <= gap < 2e-3 * primal, (gap, primal)
    longer = classical.tv_pdhg(y, lam, kind=kind, level=level, fidelity=fidelity, iterations=6000)[0]
    np.testing.assert_allclose(out, longer, atol=2e-2)


def test_gradient_adjoint_is_minus_divergence_dot_product_test():
    k1, k2 = jax.random.split(jax.random.PRNGKey(4))
    u = jax.random.normal(k1, (2, 9, 7, 3))
    p = jax.random.normal(k2, (2, 9, 7, 3, 2))
    lhs = float(jnp.sum(classical.gradient(u) * p))
    rhs = float(jnp.sum(u * classical.gradient_adjoint(p)))
    assert abs(lhs - rhs) < 1e-4 * abs(lhs)
    # the adjoint of forward differences is minus the backward-difference divergence
    div_y = np.diff(np.pad(np.asarray(p[..., 0])[:, :-1], ((0, 0), (1, 1), (0, 0), (0, 0))), axis=1)
    div_x = np.diff(np.pad(np.asarray(p[..., 1])[:, :, :-1], ((0, 0), (0, 0), (1, 1), (0, 0))), axis=2)
    np.testing.assert_allclose(classical.gradient_adjoint(p), -(div_y + div_x), atol=1e-5)


def test_bilateral_with_huge_sigma_color_is_the_normalised_gaussian_blur():
    impulse = np.zeros((1, 21, 21, 1), np.float32)
    impulse[0, 10, 10, 0] = 1.0
    out = np.asarray(classical.bilateral(jnp.asarray(impulse), 1e6, 1.5, radius=5))[0, ..., 0]
    k = np.asarray(degrade.gaussian_kernel(1.5, radius=5))
    np.testing.assert_allclose(out[5:16, 5:16], np.outer(k, k), atol=1e-6)


def test_bilateral_keeps_a_step_edge_that_the_gaussian_blurs():
    step = np.zeros((1, 16, 16, 1), np.float32)
    step[:, :, 8:] = 1.0
    out = np.asarray(classical.bilateral(jnp.asarray(step), 0.1, 2.0, radius=6))
    np.testing.assert_allclose(out, step, atol=1e-6)


@pytest.mark.parametrize("lam", [1.0, 3.0, 10.0, 30.0])
def test_inverse_anscombe_is_nearly_unbiased_where_the_algebraic_inverse_is_not(lam):
    from scipy.stats import poisson
    z = np.arange(0, 400)
    expected_d = float(np.sum(poisson.pmf(z, lam) * classical.anscombe(z)))  # E[A(z) | lambda], exactly
    exact = float(classical.inverse_anscombe(expected_d))
    algebraic = (expected_d / 2) ** 2 - 3 / 8
    assert abs(exact - lam) < 0.02 * lam
    assert abs(exact - lam) < abs(algebraic - lam)


def test_bm3d_anscombe_round_trip_on_poisson_data_is_unbiased_in_the_mean(digits):
    x = jnp.full((1, 28, 28, 1), 0.3)
    obs = degrade.degrade("poisson", 10, jax.random.PRNGKey(5), x)
    out = np.asarray(classical.restore("bm3d_anscombe", obs, scale=1.0))
    assert abs(out.mean() - 0.3) < 0.02 and out.std() < float(np.std(np.asarray(obs.y))) / 3


def test_median_passes_apply_the_filter_repeatedly(digits):
    obs = degrade.degrade("salt_pepper", 0.2, jax.random.PRNGKey(6), jnp.asarray(digits[:1]))
    once = classical.restore("median", obs, size=3, passes=1)
    twice = classical.restore("median", obs, size=3, passes=2)
    np.testing.assert_allclose(twice, classical.restore("median", obs._replace(y=once), size=3, passes=1))
