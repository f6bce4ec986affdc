"""The package's one matplotlib set-up: the Agg backend (batch jobs have no display), PNG bytes out."""

from __future__ import annotations

import io
from typing import Any

_READY = False


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend, set once for the process."""
    global _READY
    import matplotlib

    if not _READY:
        matplotlib.use("Agg")
        _READY = True
    import matplotlib.pyplot as plt

    return plt


def png(fig: Any, dpi: int = 110) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    plt = pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()
