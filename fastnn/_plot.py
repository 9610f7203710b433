"""matplotlib on demand (the optional ``plot`` extra) and atomic saving of figures."""

from __future__ import annotations

from ._files import atomic_write


def pyplot(owner):
    """matplotlib.pyplot on the non-interactive Agg backend, or an ImportError naming the extra."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(f"{owner} needs matplotlib; install it with pip install 'fastnn[plot]'.") from None
    return plt


def save_figure(fig, path, **savefig_kw):
    """Write ``fig`` to ``path`` atomically, in the format its suffix names (png by default), and close it."""
    import matplotlib.pyplot as plt

    suffix = str(path).rsplit(".", 1)[-1] if "." in str(path) else "png"
    with atomic_write(path) as f:
        fig.savefig(f, format=suffix, **savefig_kw)
    plt.close(fig)


def check_figure_path(owner, path):
    """Raise ValueError unless matplotlib can write ``path``'s format (its suffix; png when it has
    none), and ImportError naming the extra without matplotlib: checked before any work."""
    pyplot(owner)
    from matplotlib.backend_bases import FigureCanvasBase

    suffix = str(path).rsplit(".", 1)[-1].lower() if "." in str(path) else "png"
    formats = FigureCanvasBase.get_supported_filetypes()
    if suffix not in formats:
        raise ValueError(f"{owner}: cannot write a figure as .{suffix} ({path}); use one of "
                         f"{', '.join('.' + f for f in sorted(formats))}.")
