"""The ``alignment_det://`` prefix on Detectron2's PathManager.

``alignment_det://mal_R101/model_final.pth`` resolves to
``$ALIGNMENT_DET_MODEL_ZOO/mal_R101/model_final.pth`` where the variable is an
``http(s)://`` URL (downloaded once and cached by iopath under ``$FVCORE_CACHE``) or a
local folder (a mirror). Files listed in the checkpoint table are checked against
their sha256; a corrupt download is deleted from the cache and reported.
"""
import hashlib
import os

from detectron2.utils.file_io import PathManager
from iopath.common.file_io import PathHandler

from .catalog import sha256_for

PREFIX = "alignment_det://"
ENV_VAR = "ALIGNMENT_DET_MODEL_ZOO"


class ChecksumError(RuntimeError):
    pass


def zoo_root() -> str:
    root = os.environ.get(ENV_VAR, "")
    if not root:
        raise RuntimeError(
            f"{PREFIX} paths need ${ENV_VAR}: set it to the URL or local folder that holds the "
            "alignment_det checkpoints (no public mirror is published yet)."
        )
    return root.rstrip("/")


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class AlignmentDetHandler(PathHandler):
    """Resolve ``alignment_det://`` against the zoo root and verify the sha256."""

    def _get_supported_prefixes(self):
        return [PREFIX]

    def _get_local_path(self, path: str, **kwargs) -> str:
        rel = path[len(PREFIX) :]
        target = f"{zoo_root()}/{rel}"
        remote = "://" in target
        local = PathManager.get_local_path(target, **kwargs)
        expected = sha256_for(rel)
        if expected is not None:
            got = file_sha256(local)
            if got != expected:
                if remote:  # our cached download: drop it so the next call fetches it again
                    os.remove(local)
                raise ChecksumError(
                    f"Checkpoint {path} ({target}) has sha256 {got}, expected {expected}: the file is "
                    + ("corrupt or incomplete; the cached copy was deleted, try again."
                       if remote else "corrupt or not the published checkpoint.")
                )
        return local

    def _open(self, path: str, mode: str = "r", **kwargs):
        return PathManager.open(self._get_local_path(path), mode, **kwargs)

    def _exists(self, path: str, **kwargs) -> bool:
        return PathManager.exists(f"{zoo_root()}/{path[len(PREFIX):]}")


def register_handler() -> None:
    """Register the handler once (iopath refuses a second handler for a prefix)."""
    if PREFIX not in PathManager._path_handlers:
        PathManager.register_handler(AlignmentDetHandler())
