"""Human output: everything goes to stderr so that `--json` keeps stdout clean."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import pandas as pd
from rich.console import Console
from rich.table import Table

console = Console(stderr=True, highlight=False, soft_wrap=False, width=160)


def info(msg: str) -> None:
    console.print(msg, markup=False)


def table(rows: Sequence[dict[str, Any]] | pd.DataFrame, title: str | None = None,
          columns: Iterable[str] | None = None, floatfmt: str = "{:.4g}") -> None:
    """Print rows (dicts or a DataFrame) as a table on stderr."""
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if columns is not None:
        df = df[list(columns)]
    t = Table(title=title, show_lines=False)
    for c in df.columns:
        t.add_column(str(c), justify="right" if pd.api.types.is_numeric_dtype(df[c]) else "left")
    for _, r in df.iterrows():
        t.add_row(*[floatfmt.format(v) if isinstance(v, float) else str(v) for v in r.tolist()])
    console.print(t)


def progress(iterable: Iterable, total: int | None = None, desc: str = "", disable: bool = False) -> Iterable:
    """tqdm progress bar on stderr."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, disable=disable, file=__import__("sys").stderr,
                dynamic_ncols=True, leave=False)
