"""The data report's picture: a histogram of the token lengths of each split, with the
``data.max_length`` line (matplotlib, no display needed)."""

from __future__ import annotations

import io

from ..core.io import write_bytes

HISTOGRAM_FILE = "token_lengths.png"


def write_histogram(lengths: dict, max_length: int | None, path: str) -> str:
    """Write one histogram per split of ``{split: [token length per row]}`` to ``path`` (PNG),
    each with a dashed line at ``max_length`` (None: no line); returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    splits = [s for s, values in lengths.items() if values]
    fig, axes = plt.subplots(len(splits) or 1, 1, figsize=(7, 2.4 * max(len(splits), 1)),
                             squeeze=False)
    for ax, split in zip(axes[:, 0], splits):
        values = lengths[split]
        ax.hist(values, bins=min(50, max(len(set(values)), 1)), color="#4c72b0")
        if max_length is not None:
            cut = sum(1 for n in values if n > max_length)
            ax.axvline(max_length, color="#c44e52", linestyle="--",
                       label=f"max_length {max_length} ({cut:,} rows longer)")
            ax.legend(loc="upper right", fontsize=8)
        ax.set_title(f"{split}: {len(values):,} rows", fontsize=10)
        ax.set_xlabel("tokens per row")
        ax.set_ylabel("rows")
    fig.tight_layout()
    image = io.BytesIO()
    fig.savefig(image, format="png", dpi=80)
    plt.close(fig)
    return write_bytes(path, image.getvalue())
