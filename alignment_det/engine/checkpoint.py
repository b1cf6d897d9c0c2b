"""A DetectionCheckpointer that writes atomically, resumes past broken files, and refuses
checkpoints which do not fit the model.

Writing. Detectron2 (fvcore) writes ``model_*.pth`` in place and then ``last_checkpoint``:
a process killed mid-write leaves a truncated file, and after a power loss the rename-free
write can leave an empty file that ``last_checkpoint`` already names. Here every file the
checkpointer writes (checkpoints and ``last_checkpoint``) goes to a temporary file in the same
folder, is flushed and fsync'ed, then renamed over the target (and the folder fsync'ed);
``last_checkpoint`` is written only after the checkpoint's rename.

Reading. A file torch (or pickle, for Detectron2's ``.pkl``) cannot read is a one-line
:class:`CheckpointUnreadableError` naming it, never torch's advice to retry with
``weights_only=False`` (unsafe). ``--resume`` tries ``last_checkpoint``'s file, then the other
checkpoints of the folder newest first, skipping unreadable ones with a warning.

Fitting. Detectron2 only logs a warning when checkpoint keys are missing or have other shapes,
so evaluating the wrong checkpoint silently reports the AP of a random model. Here:

* ``strict=False`` (training from ``train.init_checkpoint``): missing keys and shape
  mismatches are allowed (new layers of a method, another number of classes), but a
  checkpoint of which *no* model parameter could be loaded is an error;
* ``strict=True`` (``--eval-only``, ``model_zoo.get(trained=True)``): any model parameter
  left uninitialised is an error.
"""
import contextlib
import glob
import logging
import os
import re
import zipfile
from typing import List

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils import comm

logger = logging.getLogger("alignment_det")

__all__ = ["CheckedCheckpointer", "CheckpointMismatchError", "CheckpointUnreadableError", "atomic_open"]

_PERIODIC = re.compile(r"^model_(\d+)\.pth$")
_TMP_SUFFIX = ".tmp"


class CheckpointMismatchError(RuntimeError):
    pass


class CheckpointUnreadableError(RuntimeError):
    pass


def _fsync_dir(folder: str) -> None:
    """Make a rename in ``folder`` durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "wb"):
    """Open ``path`` for writing so that it is replaced all at once or not at all.

    Writes go to ``.<name>.<pid>.tmp`` in the same folder (same file system, so the rename
    is atomic); on a clean exit of the ``with`` block the file is flushed, fsync'ed and
    renamed over ``path``, then the folder is fsync'ed. On an exception the temporary file
    is removed and ``path`` is untouched.
    """
    folder = os.path.dirname(path) or "."
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}{_TMP_SUFFIX}")
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    _fsync_dir(folder)


class _AtomicWrites:
    """A PathManager whose ``open(path, "w"/"wb")`` of a local path is :func:`atomic_open`.

    fvcore's ``Checkpointer.save`` and ``tag_last_checkpoint`` write through
    ``self.path_manager.open``; wrapping it makes both atomic without copying them.
    Everything else (``exists``, ``ls``, ``rm``, reads, remote paths) goes to the wrapped one.
    """

    def __init__(self, path_manager):
        self._path_manager = path_manager

    def __getattr__(self, name):
        return getattr(self._path_manager, name)

    def open(self, path: str, mode: str = "r", **kwargs):
        if "w" in mode and "://" not in path and not kwargs:
            return atomic_open(path, mode)
        return self._path_manager.open(path, mode, **kwargs)


def _unreadable_reason(path: str, error: Exception) -> str:
    """Why torch/pickle could not read ``path``, in words (never torch's weights_only advice)."""
    if os.path.getsize(path) == 0:
        return "it is empty (0 bytes)"
    text = str(error)
    unsupported = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if unsupported:
        return (
            f"it holds a Python object ({unsupported.group(1)}) that a safe (weights-only) load refuses; "
            "re-save it as a dict of tensors"
        )
    if isinstance(error, EOFError) or "central directory" in text or isinstance(error, zipfile.BadZipFile):
        return "it is truncated or not a checkpoint (its end is missing)"
    return f"it is truncated or not a checkpoint ({type(error).__name__})"


class CheckedCheckpointer(DetectionCheckpointer):
    def __init__(self, model, save_dir="", *, strict: bool = False, **kwargs):
        super().__init__(model, save_dir, **kwargs)
        self.strict = strict
        self.path_manager = _AtomicWrites(self.path_manager)
        self.resumed_from = None  # the file resume_or_load() resumed from

    # ------------------------------------------------------------------ reading
    def load(self, path, *args, **kwargs):
        try:
            return super().load(path, *args, **kwargs)
        finally:
            # DetectionCheckpointer resets this only after a successful load, and asserts that
            # it is unset: without this, a failed load would break the next one (resume's fallback).
            self._parsed_url_during_load = None

    def _load_file(self, filename):
        try:
            loaded = super()._load_file(filename)
        except (FileNotFoundError, IsADirectoryError, PermissionError):
            raise
        except Exception as e:  # noqa: BLE001 - torch and pickle raise many types on a broken file
            if isinstance(e, ValueError) and "Unsupported query" in str(e):  # Detectron2's URL-query check
                raise
            # "from None": the original message carries torch's unsafe weights_only=False advice.
            raise CheckpointUnreadableError(
                f"Checkpoint {filename} is unreadable: {_unreadable_reason(filename, e)}."
            ) from None
        weights = loaded.get("model") if isinstance(loaded, dict) else loaded
        if not isinstance(weights, dict):
            raise CheckpointUnreadableError(
                f"Checkpoint {filename} is not a checkpoint: it holds a {type(weights).__name__}, not a dict of tensors."
            )
        return loaded

    def resume_candidates(self) -> List[str]:
        """Checkpoints of ``save_dir`` to resume from, in order: ``last_checkpoint``'s file, then
        ``model_final.pth``, then ``model_<iter>.pth`` by decreasing iteration."""
        files = [os.path.basename(f) for f in glob.glob(os.path.join(self.save_dir, "model_*.pth"))]
        periodic = sorted((f for f in files if _PERIODIC.match(f)), key=lambda f: -int(_PERIODIC.match(f).group(1)))
        ordered = (["model_final.pth"] if "model_final.pth" in files else []) + periodic
        last = self.get_checkpoint_file() if self.has_checkpoint() else ""
        out = [last] if last else []
        return out + [os.path.join(self.save_dir, f) for f in ordered if os.path.join(self.save_dir, f) != last]

    def resume_or_load(self, path: str, *, resume: bool = True):
        """As Detectron2's, but ``--resume`` skips unreadable checkpoints (with a warning) and
        uses the newest readable one; when none is readable it is an error."""
        if not (resume and self.has_checkpoint()):
            return self.load(path, checkpointables=[])
        if comm.is_main_process():
            self.remove_stale_temporary_files()
        skipped = []
        for candidate in self.resume_candidates():
            if not os.path.isfile(candidate):
                skipped.append(f"{candidate} (missing)")
                logger.warning("--resume: %s does not exist; trying the previous checkpoint.", candidate)
                continue
            try:
                extra = self.load(candidate)
                self.resumed_from = candidate
                return extra
            except CheckpointUnreadableError as e:
                skipped.append(str(e))
                logger.warning("--resume: %s Trying the previous checkpoint.", e)
        raise CheckpointUnreadableError(
            f"--resume: no readable checkpoint in {self.save_dir} ({'; '.join(skipped)}). Move the folder away "
            "to start again, or run without --resume and another train.output_dir."
        )

    def remove_stale_temporary_files(self) -> None:
        """Delete ``.model_*.pth.<pid>.tmp`` left by a writer killed mid-checkpoint (only the
        output folder's lock holder calls this, so no other process is writing them)."""
        for tmp in glob.glob(os.path.join(self.save_dir, f".*.pth.*{_TMP_SUFFIX}")):
            logger.info("Removing %s, left by an interrupted checkpoint write.", tmp)
            with contextlib.suppress(OSError):
                os.remove(tmp)

    # ------------------------------------------------------------------ fitting
    def _load_model(self, checkpoint):
        ckpt_keys = set(checkpoint.get("model", {}))  # before loading, which drops bad shapes
        incompatible = super()._load_model(checkpoint)
        model_keys = set(self.model.state_dict().keys())
        bad_shapes = {k for k, *_ in incompatible.incorrect_shapes}
        missing = set(incompatible.missing_keys) | bad_shapes
        if self.strict and missing:
            shapes = ", ".join(f"{k}: checkpoint {a} vs model {b}" for k, a, b in incompatible.incorrect_shapes[:5])
            raise CheckpointMismatchError(
                f"The checkpoint does not fit the model: {len(missing)} of {len(model_keys)} model "
                f"parameters are not in it (e.g. {sorted(missing)[:5]})"
                + (f"; shape mismatches: {shapes}" if shapes else "")
                + ". Check that the config matches the checkpoint (model, backbone, num_classes)."
            )
        # Detectron2 drops pixel_mean/pixel_std from missing_keys, so count what did load.
        if model_keys and not (model_keys & ckpt_keys) - bad_shapes:
            raise CheckpointMismatchError(
                f"None of the model's {len(model_keys)} parameters could be loaded from the checkpoint "
                f"(its keys: {sorted(ckpt_keys)[:5]} ...). It is for another model."
            )
        return incompatible
