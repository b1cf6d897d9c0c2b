"""The table of trained checkpoints the model zoo can hand out.

Each entry maps a config path (relative to ``configs/``) to the checkpoint's path under
the zoo prefix (``alignment_det://<path>``) and its sha256. **No trained weights have
been published yet**, so the table is empty: an entry is added only together with a
checkpoint that exists and was produced by that config (see MODEL_ZOO in README).
"""
from typing import Dict, NamedTuple


class Checkpoint(NamedTuple):
    path: str  # under the zoo prefix, e.g. "mal_R101/model_final.pth"
    sha256: str


CHECKPOINTS: Dict[str, Checkpoint] = {}


def register_checkpoint(config_path: str, path: str, sha256: str) -> None:
    """Add a checkpoint to the table (for a private zoo or a mirror with its own weights)."""
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256.lower()):
        raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")
    CHECKPOINTS[config_path] = Checkpoint(path, sha256.lower())


def sha256_for(path: str):
    """The expected sha256 of a zoo path, or None when the table does not list it."""
    for ckpt in CHECKPOINTS.values():
        if ckpt.path == path:
            return ckpt.sha256
    return None
