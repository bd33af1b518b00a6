"""Matplotlib's backend for snippets, chosen by MPLBACKEND=module://sandbox_plots.

It draws with Agg, and its `show()` saves every open figure as a PNG in the working directory
(figure_1.png, figure_2.png, ...; a name already taken is skipped), then closes them, as a
window would be closed: the sandbox sends new images in the workdir back with the answer.
"""

from __future__ import annotations

import os

from matplotlib._pylab_helpers import Gcf
from matplotlib.backends.backend_agg import FigureCanvasAgg

FigureCanvas = FigureCanvasAgg

_number = 0


def show(*args: object, **kwargs: object) -> None:
    """Save each open figure as figure_N.png, then close them all."""
    global _number
    for manager in Gcf.get_all_fig_managers():
        _number += 1
        while os.path.exists(f"figure_{_number}.png"):
            _number += 1
        manager.canvas.figure.savefig(f"figure_{_number}.png")
    Gcf.destroy_all()
