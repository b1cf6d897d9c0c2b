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

Architecture. Every checkpoint records the meta-architecture (model class) and box coder it was
saved from (:func:`model_architecture`, key ``"architecture"``). The keys of a RetinaNet checkpoint
fit MALRetinaNet, but MAL decodes boxes with other weights, so evaluating one as the other reports
a collapsed AP75 without a word. Loading a checkpoint of another architecture warns; with
``arch_mismatch="error"`` (``--eval-only`` unless ``--allow-arch-mismatch``) it is an error.
Checkpoints that record nothing (Detectron2's, older ones) are not compared.

Full disk. A checkpoint that cannot be written because the disk is full (torch reports it as
``RuntimeError: [enforce fail at inline_container.cc...]``) is a :class:`CheckpointWriteError`
that says so and names the file; the previous checkpoints are intact (atomic writes).
"""
import contextlib
import errno
import glob
import logging
import os
import re
import shutil
import zipfile
from typing import Dict, List, Optional

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils import comm
from torch.nn.parallel import DistributedDataParallel

logger = logging.getLogger("alignment_det")

__all__ = [
    "ARCHITECTURE_KEY",
    "CheckedCheckpointer",
    "CheckpointMismatchError",
    "CheckpointUnreadableError",
    "CheckpointWriteError",
    "atomic_open",
    "model_architecture",
    "unwrap_model",
]

_PERIODIC = re.compile(r"^model_(\d+)\.pth$")
_TMP_SUFFIX = ".tmp"
#: Checkpoint key of :func:`model_architecture`'s record.
ARCHITECTURE_KEY = "architecture"
_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class CheckpointMismatchError(RuntimeError):
    pass


class CheckpointUnreadableError(RuntimeError):
    pass


class CheckpointWriteError(OSError):
    pass


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The model without DDP's wrapper (names without "module.", the class the config built)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def _describe_box_coder(coder) -> Optional[str]:
    """``Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0))``, ``Box2BoxTransformLinear(normalize_by_size=True)``."""
    if coder is None:
        return None
    name = type(coder).__name__
    if hasattr(coder, "weights"):
        return f"{name}(weights={tuple(float(w) for w in coder.weights)})"
    if hasattr(coder, "normalize_by_size"):
        return f"{name}(normalize_by_size={bool(coder.normalize_by_size)})"
    return name


def model_architecture(model: torch.nn.Module) -> Dict[str, Optional[str]]:
    """What decides how a model reads its weights, as plain strings (a weights-only load reads them):
    ``meta_architecture`` (the model's class, dotted) and ``box_coder`` (its ``box2box_transform``:
    class and weights; None for a model without one)."""
    model = unwrap_model(model)
    cls = type(model)
    return {
        "meta_architecture": f"{cls.__module__}.{cls.__qualname__}",
        "box_coder": _describe_box_coder(getattr(model, "box2box_transform", None)),
    }


def _disk_full_error(error: BaseException) -> Optional[OSError]:
    """The ENOSPC / EDQUOT OSError in ``error``'s chain, if any."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in _DISK_FULL_ERRNOS:
            return error
        error = error.__cause__ or error.__context__
    return None


def _free_bytes(folder: str) -> Optional[int]:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _state_bytes(model: Optional[torch.nn.Module]) -> int:
    if model is None:
        return 0
    return sum(t.numel() * t.element_size() for t in model.state_dict().values() if torch.is_tensor(t))


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
    def __init__(self, model, save_dir="", *, strict: bool = False, arch_mismatch: str = "warn", **kwargs):
        super().__init__(model, save_dir, **kwargs)
        self.strict = strict
        self.path_manager = _AtomicWrites(self.path_manager)
        self.resumed_from = None  # the file resume_or_load() resumed from
        if arch_mismatch not in ("warn", "error"):
            raise ValueError(f"arch_mismatch must be 'warn' or 'error', got {arch_mismatch!r}")
        self.arch_mismatch = arch_mismatch
        self._loading = None  # the file load() is reading, for messages

    # ------------------------------------------------------------------ writing
    def save(self, name: str, **kwargs) -> None:
        """fvcore's ``save`` plus the model's architecture record; a full disk is a
        :class:`CheckpointWriteError` naming the file."""
        if self.model is not None:
            kwargs.setdefault(ARCHITECTURE_KEY, model_architecture(self.model))
        try:
            super().save(name, **kwargs)
        except (OSError, RuntimeError) as e:
            path = os.path.join(self.save_dir, f"{name}.pth")
            free = _free_bytes(self.save_dir)
            # torch reports a failed write as "[enforce fail at inline_container.cc:...] ... file write
            # failed" without the errno; a disk with less room than the model's weights is full too.
            torch_write_failed = isinstance(e, RuntimeError) and "inline_container" in str(e)
            if _disk_full_error(e) is None and not (
                torch_write_failed and free is not None and free < _state_bytes(self.model)
            ):
                raise
            free_text = f"{free / 2**20:.1f} MiB free" if free is not None else "free space unknown"
            raise CheckpointWriteError(
                errno.ENOSPC,
                f"Could not save checkpoint {path}: the disk is full ({free_text} in {self.save_dir}). Free some "
                "space or set train.output_dir to another disk, then continue with --resume; the checkpoints "
                "already written are intact.",
            ) from e

    # ------------------------------------------------------------------ reading
    def load(self, path, *args, **kwargs):
        self._loading = path
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
    def check_architecture(self, checkpoint: dict) -> None:
        """Compare the checkpoint's architecture record with the model's: a warning, or an error
        with ``arch_mismatch="error"``."""
        recorded = checkpoint.get(ARCHITECTURE_KEY) if isinstance(checkpoint, dict) else None
        if not isinstance(recorded, dict) or self.model is None:
            return
        current = model_architecture(self.model)
        diffs = [f"{key} {recorded.get(key)} (checkpoint) vs {value} (config)"
                 for key, value in current.items() if recorded.get(key) != value]
        if not diffs:
            return
        message = (
            f"Checkpoint {self._loading} was saved by another architecture than the config's: {'; '.join(diffs)}. "
            "Its weights may load without a missing key, but its boxes are decoded another way"
        )
        if self.arch_mismatch == "error":
            raise CheckpointMismatchError(
                f"{message}, so its AP would be wrong. Evaluate it with the config it was trained with, or pass "
                "--allow-arch-mismatch to evaluate it as this model anyway."
            )
        logger.warning("%s: fine as initial weights for training, not for evaluating as this model.", message)

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
        # After the fit checks: keys that do not fit are the more basic error.
        self.check_architecture(checkpoint)
        return incompatible
