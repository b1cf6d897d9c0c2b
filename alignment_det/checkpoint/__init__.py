"""Checkpoints: atomic writing and checked loading (:class:`CheckedCheckpointer`), the table of
published weights (:mod:`.catalog`) and the ``alignment_det://`` prefix that resolves them.

Importing this package registers the prefix on Detectron2's PathManager (as
``detectron2.checkpoint`` registers ``detectron2://``), so every path that loads a checkpoint
-- the trainer, ``--eval-only``, ``model_zoo.get`` -- resolves it.
"""
from .catalog import CHECKPOINTS, register_checkpoint
from .checkpointer import (
    ARCHITECTURE_KEY,
    CheckedCheckpointer,
    CheckpointMismatchError,
    CheckpointUnreadableError,
    CheckpointWriteError,
    atomic_open,
    model_architecture,
    unwrap_model,
)
from .handler import ENV_VAR, PREFIX, ChecksumError, register_handler

register_handler()

__all__ = [
    "ARCHITECTURE_KEY", "CHECKPOINTS", "ENV_VAR", "PREFIX", "CheckedCheckpointer", "CheckpointMismatchError",
    "CheckpointUnreadableError", "CheckpointWriteError", "ChecksumError", "atomic_open", "model_architecture",
    "register_checkpoint", "register_handler", "unwrap_model",
]
