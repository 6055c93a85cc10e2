import numpy as np
import pytest
import torch

from robustlm.regression import closed_form, fit, perturbation, simulate

SETTINGS = dict(
    seed=0,
    runs=6,
    samples=40,
    theta=0.5,
    noise_levels=[0.01, 0.1],
    epochs=3000,
    switch_epoch=200,
    learning_rate=0.005,
    steps=3,
    epsilon=0.2,
    step_size=0.5,
    init_std=0.05,
)


def data(noise=0.1, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 30, generator=generator, dtype=torch.float64)
    return x, 0.5 * x + noise * torch.randn(4, 30, generator=generator, dtype=torch.float64)


@pytest.mark.parametrize("method", ["ols", "pgd_at", "lds"])
def test_table1_formulas_minimise_their_losses(method):
    """The closed forms equal the vertex of each (quadratic in theta) loss, fitted numerically."""
    x, y = data()
    delta = 0.3
    formula = closed_form(method, x, y, delta)
    for run in range(x.shape[0]):
        grid = np.linspace(0, 1, 7)
        xs, ys = x[run].numpy(), y[run].numpy()
        adversarial = {
            "ols": lambda t, xs, ys: 0 * xs,
            "pgd_at": lambda t, xs, ys: (t * (xs + delta) - ys) ** 2,
            "lds": lambda t, xs, ys: (t * delta) ** 2,
        }[method]
        losses = [np.mean((t * xs - ys) ** 2 + adversarial(t, xs, ys)) for t in grid]
        a, b, _ = np.polyfit(grid, losses, 2)
        assert formula[run].item() == pytest.approx(-b / (2 * a), abs=1e-9)


@pytest.mark.parametrize("method", ["ols", "pgd_at", "lds"])
def test_gradient_descent_with_a_fixed_delta_reaches_the_closed_form(method):
    x, y = data()
    theta = fit(method, x, y, SETTINGS, torch.Generator().manual_seed(1), fixed_delta=0.3)
    assert torch.allclose(theta, closed_form(method, x, y, 0.3), atol=1e-6)


@pytest.mark.parametrize("method", ["pgd_at", "lds"])
def test_ascent_stays_in_the_epsilon_interval_and_raises_the_adversarial_loss(method):
    from robustlm.regression import adversarial_term

    x, y = data()
    theta = torch.full((4, 1), 0.4, dtype=torch.float64)
    delta = perturbation(method, theta, x, y, SETTINGS, torch.Generator().manual_seed(2))
    assert delta.abs().max() <= SETTINGS["epsilon"] + 1e-12
    start = adversarial_term(method, theta, x, y, torch.zeros_like(x)).sum()
    assert adversarial_term(method, theta, x, y, delta).sum() > start


def test_lds_shrinks_theta_towards_zero_and_ols_is_unbiased():
    estimates, table = simulate(SETTINGS)
    assert len(estimates) == 3 * 2 * SETTINGS["runs"]
    table = table.set_index(["method", "noise"])
    assert table.loc[("OLS", 0.01), "theta_mean"] == pytest.approx(0.5, abs=0.005)
    # with delta^2 added to the denominator (Table 1), LDS estimates are biased low
    assert table.loc[("LDS", 0.01), "theta_mean"] < table.loc[("OLS", 0.01), "theta_mean"]
    assert (table.closed_form_max_abs_error < 1e-5).all()
