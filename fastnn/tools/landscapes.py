"""Two-parameter test functions for watching optimizers move (the lectures' landscape demo).

Each Landscape has its value f(x, y), its gradient, a plotting window, a default starting
point and its global minimum. ``fastnn.optim.trace`` runs an optimizer on one and returns the
path; ``plot_paths`` draws the paths over the contours (``fastnn landscape`` on the command line).

>>> import fastnn as fnn
>>> land = fnn.landscapes.get_landscape("rosenbrock")
>>> land(1.0, 1.0), land.minimum
(0.0, (1.0, 1.0))
"""

from __future__ import annotations

import numpy as np

from .._checks import check_choice


class Landscape:
    """A function of two parameters with its gradient, for optimizer demonstrations.

    Parameters
    ----------
    name : str
    value : callable (x, y) -> f
        Elementwise on NumPy arrays (broadcasting), so that a grid can be evaluated at once.
    gradient : callable (x, y) -> (df/dx, df/dy)
    window : ((x_min, x_max), (y_min, y_max))
        Where to draw it.
    start : (x, y)
        A starting point that shows the landscape's difficulty.
    minimum : (x, y)
        A global minimum; ``min_value`` is f there.
    description : str

    A landscape is callable: ``land(x, y)`` is ``land.value(x, y)``.
    """

    def __init__(self, name, value, gradient, window, start, minimum, description):
        self.name, self.value, self._gradient = name, value, gradient
        self.window, self.start, self.minimum, self.description = window, start, minimum, description
        self.min_value = float(value(*minimum))

    def __call__(self, x, y):
        return self.value(x, y)

    def gradient(self, x, y):
        """(df/dx, df/dy) at (x, y) as a float64 array of shape (2,) (or (2, ...) on arrays)."""
        return np.array(self._gradient(x, y), dtype=np.float64)

    def __repr__(self):
        return f"Landscape({self.name!r}: {self.description})"


# f = 0.1 x^2 + 2 y^2: curvatures 0.2 and 4 (condition number 20), a long narrow valley
def _quadratic(x, y):
    return 0.1 * x * x + 2.0 * y * y


def _quadratic_grad(x, y):
    return 0.2 * x, 4.0 * y


# f = x^2 + y^4 / 4 - y^2 / 2: a saddle at the origin between minima at (0, +-1), f = -1/4
def _saddle(x, y):
    return x * x + 0.25 * y ** 4 - 0.5 * y * y


def _saddle_grad(x, y):
    return 2.0 * x, y ** 3 - y


# Rosenbrock (a, b) = (1, 100): a curved, flat-bottomed valley; minimum 0 at (1, 1)
def _rosenbrock(x, y):
    return (1.0 - x) ** 2 + 100.0 * (y - x * x) ** 2


def _rosenbrock_grad(x, y):
    return -2.0 * (1.0 - x) - 400.0 * x * (y - x * x), 200.0 * (y - x * x)


# Beale: flat plateaus and steep walls; minimum 0 at (3, 0.5)
_BEALE = ((1.5, 1), (2.25, 2), (2.625, 3))  # (c_k, k): term (c_k - x + x y^k)^2


def _beale(x, y):
    return sum((c - x + x * y ** k) ** 2 for c, k in _BEALE)


def _beale_grad(x, y):
    terms = [(c - x + x * y ** k, k) for c, k in _BEALE]
    gx = sum(2.0 * r * (y ** k - 1.0) for r, k in terms)
    gy = sum(2.0 * r * k * x * y ** (k - 1) for r, k in terms)
    return gx, gy


# a tilted double well, f = (x^2 - 1)^2 + 0.3 x + y^2: a local minimum near (0.96, 0) and the
# global one near (-1.04, 0), with a barrier near x = 0.08 between them
_TILT = 0.3


def _double_well(x, y):
    return (x * x - 1.0) ** 2 + _TILT * x + y * y


def _double_well_grad(x, y):
    return 4.0 * x * (x * x - 1.0) + _TILT, 2.0 * y


def _double_well_minimum():
    # stationary points: 4x^3 - 4x + tilt = 0; the smallest real root is the global minimum
    roots = np.roots([4.0, 0.0, -4.0, _TILT])
    return (float(min(r.real for r in roots if abs(r.imag) < 1e-12)), 0.0)


LANDSCAPES = {
    land.name: land for land in (
        Landscape("quadratic", _quadratic, _quadratic_grad, ((-6.0, 6.0), (-3.0, 3.0)), (-5.0, 2.5), (0.0, 0.0),
                  "ill-conditioned quadratic 0.1 x^2 + 2 y^2 (condition number 20)"),
        Landscape("saddle", _saddle, _saddle_grad, ((-2.0, 2.0), (-1.6, 1.6)), (-1.8, 0.01), (0.0, 1.0),
                  "x^2 + y^4/4 - y^2/2: a saddle at (0, 0), minima at (0, +-1)"),
        Landscape("rosenbrock", _rosenbrock, _rosenbrock_grad, ((-2.0, 2.0), (-1.0, 3.0)), (-1.2, 1.0), (1.0, 1.0),
                  "Rosenbrock (1 - x)^2 + 100 (y - x^2)^2: a curved flat valley"),
        Landscape("beale", _beale, _beale_grad, ((-4.5, 4.5), (-4.5, 4.5)), (1.0, 1.5), (3.0, 0.5),
                  "Beale: plateaus and steep walls"),
        Landscape("double_well", _double_well, _double_well_grad, ((-2.0, 2.0), (-1.5, 1.5)), (1.8, 1.0),
                  _double_well_minimum(), "tilted double well (x^2 - 1)^2 + 0.3 x + y^2: a local minimum "
                                          "near (0.96, 0), the global one near (-1.04, 0)"),
    )
}


def get_landscape(landscape, owner="get_landscape"):
    """A Landscape from an instance (returned as is) or a name in LANDSCAPES."""
    if isinstance(landscape, Landscape):
        return landscape
    return LANDSCAPES[check_choice(owner, "landscape", landscape, tuple(LANDSCAPES))]


def plot_paths(landscape, paths, path, title=None):
    """Draw the landscape's contours with each optimizer's path, one panel per path side by side,
    and a last panel with f - f* along each path (log scale); saved to ``path`` atomically.

    ``paths`` maps a label (e.g. 'adam lr=0.001') to an array (steps + 1, 2) from
    fastnn.optim.trace (a dict, or a sequence of (label, path) pairs). Needs matplotlib
    (``pip install fastnn[plot]``).
    """
    from matplotlib.colors import LogNorm

    from .._plot import pyplot, save_figure

    plt = pyplot("plot_paths")
    land = get_landscape(landscape, "plot_paths")
    (x0, x1), (y0, y1) = land.window
    gx, gy = np.meshgrid(np.linspace(x0, x1, 300), np.linspace(y0, y1, 300))
    gap = land(gx, gy) - land.min_value
    # log-spaced levels: these functions span many orders of magnitude around their minimum
    low = max(float(gap[gap > 0].min()), float(gap.max()) * 1e-6)
    levels = np.geomspace(low, float(gap.max()), 30)
    paths = list(paths.items() if isinstance(paths, dict) else paths)
    n = len(paths)
    fig, axes = plt.subplots(1, n + 1, figsize=(4.2 * (n + 1), 4.0), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    curves = axes[0, n]
    for i, (label, xy) in enumerate(paths):
        ax, color = axes[0, i], colors[i % len(colors)]
        ax.contourf(gx, gy, np.maximum(gap, low), levels=levels, norm=LogNorm(), cmap="viridis", alpha=0.85)
        ax.contour(gx, gy, np.maximum(gap, low), levels=levels[::3], norm=LogNorm(), colors="white",
                   linewidths=0.4, alpha=0.6)
        ax.plot(xy[:, 0], xy[:, 1], "-", color="white", linewidth=2.6)
        ax.plot(xy[:, 0], xy[:, 1], "-", color=color, linewidth=1.6)
        ax.plot(*xy[0], "o", color="white", markeredgecolor="black", label="start")
        ax.plot(*land.minimum, "*", color="gold", markeredgecolor="black", markersize=14, label="global minimum")
        final = float(land(*xy[-1]))
        ax.set_title(f"{label}\nfinal f = {final:.3g}", fontsize=10)
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_xlabel("x")
        if i == 0:
            ax.set_ylabel("y")
            ax.legend(loc="lower right", fontsize=8)
        with np.errstate(all="ignore"):
            curve = land(xy[:, 0], xy[:, 1]) - land.min_value
        curves.plot(np.arange(len(xy)), np.where(curve > 0, curve, np.nan), color=color, label=label)
    curves.set_yscale("log")
    curves.set_xlabel("step")
    curves.set_title("f - f*", fontsize=10)
    curves.grid(alpha=0.3)
    curves.legend(fontsize=8)
    fig.suptitle(title or f"{land.name}: {land.description}", fontsize=11)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


__all__ = ["LANDSCAPES", "Landscape", "get_landscape", "plot_paths"]
