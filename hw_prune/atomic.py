"""Write files so that nothing the user had is lost: write to a temp file beside it, then rename."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from hw_prune.errors import UserError


def ensure_writable_dir(path: str | Path) -> Path:
    """Create `path` (and parents) or raise a UserError naming it."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create directory {p}: {e.strerror}; choose a writable location") from None
    if not os.access(p, os.W_OK):
        raise UserError(f"directory {p} is not writable; choose a writable location")
    return p


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path in the target's directory; rename it over `path` only if the block succeeds."""
    target = Path(path)
    ensure_writable_dir(target.parent if str(target.parent) else ".")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or ".")
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp makes 0600 files; give the result the mode a normal open() would (or the old file's).
    umask = os.umask(0)
    os.umask(umask)
    mode = (target.stat().st_mode & 0o777) if target.exists() else (0o666 & ~umask)
    os.chmod(tmp_path, mode)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: str | Path, what: str = "file") -> Any:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{what} {p} does not exist; check the path")
    try:
        return json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{what} {p} is not valid JSON ({e}); regenerate it") from None
