"""The one-dimensional regression study of Altinisik et al. (Section 3, Table 1 and Figure 1).

A single neuron y = theta * x is fitted to y = theta_true * x + noise, noise ~ N(0, sigma^2), by gradient
descent on OLS, and — after `switch_epoch` — on the PGD-AT or LDS loss with per-sample perturbations delta
found as in Algorithm 1 (Gaussian start, S ascent steps, projection onto |delta| <= epsilon). All runs of
one noise level share their data across methods, so the methods are compared on the same draws.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from .logs import progress  # noqa: E402

METHODS = ("ols", "pgd_at", "lds")
LABELS = {"ols": "OLS", "pgd_at": "PGD-AT", "lds": "LDS"}


def adversarial_term(method: str, theta, x, y, delta):
    if method == "pgd_at":
        return (theta * (x + delta) - y) ** 2
    if method == "lds":
        return (theta * (x + delta) - theta * x) ** 2
    raise ValueError(f"no adversarial term for '{method}'")


def loss(method: str, theta, x, y, delta=None):
    """Table 1, column 2, summed over runs (theta: runs x 1; x, y, delta: runs x samples)."""
    squared_error = (theta * x - y) ** 2
    if method == "ols":
        return squared_error.mean(dim=-1).sum()
    return (squared_error + adversarial_term(method, theta, x, y, delta)).mean(dim=-1).sum()


def closed_form(method: str, x, y, delta: float):
    """Table 1, column 3: the minimiser of the loss for a fixed perturbation delta."""
    if method == "ols":
        return (x * y).sum(-1) / (x**2).sum(-1)
    if method == "pgd_at":
        return (2 * x * y + y * delta).sum(-1) / (x**2 + (x + delta) ** 2).sum(-1)
    if method == "lds":
        return (x * y).sum(-1) / (x**2 + delta**2).sum(-1)
    raise ValueError(f"unknown method '{method}'")


def perturbation(method: str, theta, x, y, settings: dict, generator: torch.Generator):
    """Algorithm 1's inner loop: delta ~ N(0, init_std^2), then S steps delta <- Pi(delta + mu * grad)."""
    delta = torch.randn(x.shape, generator=generator, dtype=x.dtype) * settings["init_std"]
    delta = delta.clamp(-settings["epsilon"], settings["epsilon"])
    for _ in range(settings["steps"]):
        delta.requires_grad_(True)
        (gradient,) = torch.autograd.grad(adversarial_term(method, theta.detach(), x, y, delta).sum(), delta)
        delta = (delta + settings["step_size"] * gradient).clamp(-settings["epsilon"], settings["epsilon"]).detach()
    return delta


def fit(method: str, x, y, settings: dict, generator: torch.Generator, fixed_delta: float | None = None):
    """Full-batch gradient descent from theta = 0: OLS until `switch_epoch`, then the method's loss."""
    theta = torch.zeros((x.shape[0], 1), dtype=x.dtype, requires_grad=True)  # one per run, broadcast over samples
    for epoch in range(settings["epochs"]):
        if method == "ols" or (fixed_delta is None and epoch < settings["switch_epoch"]):
            objective = loss("ols", theta, x, y)
        else:
            delta = (
                torch.full_like(x, fixed_delta)
                if fixed_delta is not None
                else perturbation(method, theta, x, y, settings, generator)
            )
            objective = loss(method, theta, x, y, delta)
        (gradient,) = torch.autograd.grad(objective, theta)
        with torch.no_grad():
            theta -= settings["learning_rate"] * gradient
    return theta.detach().squeeze(1)


def draw(settings: dict, noise: float, generator: torch.Generator):
    shape = (settings["runs"], settings["samples"])
    x = torch.randn(shape, generator=generator, dtype=torch.float64)
    y = settings["theta"] * x + noise * torch.randn(shape, generator=generator, dtype=torch.float64)
    return x, y


def simulate(settings: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """theta per (method, noise, run), and Table 1: mean/spread per method with the closed-form check."""
    generator = torch.Generator().manual_seed(settings["seed"])
    estimates, table = [], []
    bar = progress(desc="fitted", total=len(settings["noise_levels"]) * len(METHODS), unit="method x noise")
    for noise in settings["noise_levels"]:
        x, y = draw(settings, noise, generator)
        for method in METHODS:
            theta = fit(method, x, y, settings, generator)
            estimates += [
                {"method": method, "noise": noise, "run": run, "theta": float(value)} for run, value in enumerate(theta)
            ]
            fixed = settings["epsilon"]
            gradient_descent = fit(method, x, y, settings, generator, fixed_delta=fixed)
            formula = closed_form(method, x, y, fixed)
            table.append(
                {
                    "method": LABELS[method],
                    "noise": noise,
                    "theta_mean": float(theta.mean()),
                    "theta_std": float(theta.std()),
                    "bias": float(theta.mean() - settings["theta"]),
                    "fixed_delta": fixed,
                    "closed_form_theta": float(formula.mean()),
                    "gradient_descent_theta": float(gradient_descent.mean()),
                    "closed_form_max_abs_error": float((gradient_descent - formula).abs().max()),
                }
            )
            bar.update()
    bar.close()
    return pd.DataFrame(estimates), pd.DataFrame(table)


def plot(estimates: pd.DataFrame, theta: float, path) -> None:
    noise_levels = sorted(estimates.noise.unique())
    fig, axes = plt.subplots(1, len(noise_levels), figsize=(5 * len(noise_levels), 3.6), squeeze=False)
    for ax, noise in zip(axes[0], noise_levels):
        subset = estimates[estimates.noise == noise]
        ax.boxplot([subset[subset.method == m].theta for m in METHODS], showmeans=True)
        ax.set_xticks(range(1, len(METHODS) + 1), [LABELS[m] for m in METHODS])
        ax.axhline(theta, color="gray", linestyle="--", linewidth=1, label=f"true theta = {theta}")
        ax.set_title(f"sigma = {noise}")
        ax.set_ylabel("estimated theta")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
