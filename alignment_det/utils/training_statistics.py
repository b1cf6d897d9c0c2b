"""Training statistics kept in buffers, and what happens when a checkpoint predates them.

Stateful losses (GHM's bin EMA, HCRA-R's running mean) keep their state in persistent buffers so
that ``--resume`` continues them exactly (docs/methods.md#training-state). A checkpoint of the *baseline*
detector has no such buffers: loading it must not report them as missing, because a statistic that
was never accumulated is the same as a fresh one. :class:`TrainingStatistics` implements exactly
that, and nothing more: when *all* of a module's own buffers are absent from the checkpoint they
keep their initial values and are not listed as missing; when only some are absent (a checkpoint of
another version of the module), they are reported as usual.
"""
import logging
from typing import List

from torch import nn

__all__ = ["TrainingStatistics"]

logger = logging.getLogger(__name__)


class TrainingStatistics(nn.Module):
    """Base class for modules whose persistent buffers are training statistics (see module doc)."""

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        own = [prefix + name for name, b in self._buffers.items() if b is not None and name not in self._non_persistent_buffers_set]
        absent: List[str] = [k for k in own if k not in state_dict]
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)
        if own and len(absent) == len(own):
            for k in absent:
                if k in missing_keys:
                    missing_keys.remove(k)
            logger.info("%s: no statistics in the checkpoint (%s); they start fresh", type(self).__name__, ", ".join(absent))
