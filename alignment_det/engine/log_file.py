"""``log.txt`` without terminal colours.

Detectron2's ``default_setup`` logs the config file highlighted for a terminal (pygments' ANSI
escape codes), and its file handler writes the message as it is, so ``log.txt`` filled with
``\\x1b[38;5;204m``. Here the loggers that ``default_setup`` configures are set up first (its
``setup_logger`` is cached per arguments, so its own calls then return these loggers unchanged) and
their file handlers get a formatter that removes the escape codes; the console keeps its colours.
"""
import logging
import re
import sys

from detectron2.utils.logger import setup_logger

__all__ = ["ANSI_ESCAPE", "PlainFileFormatter", "setup_run_logging"]

#: CSI escape sequences (colours, cursor movement) as terminals and pygments write them.
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class PlainFileFormatter(logging.Formatter):
    """A formatter whose output has no ANSI escape codes (for log files)."""

    def format(self, record: logging.LogRecord) -> str:
        return ANSI_ESCAPE.sub("", super().format(record))


def _uncolour_file_handlers(log: logging.Logger) -> None:
    for handler in log.handlers:
        stream = getattr(handler, "stream", None)
        if stream is None or stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            continue  # the console: keeps its colours
        if isinstance(handler.formatter, PlainFileFormatter):
            continue
        fmt = handler.formatter
        handler.setFormatter(PlainFileFormatter(fmt._fmt if fmt else None, fmt.datefmt if fmt else None))


def setup_run_logging(output_dir: str, rank: int) -> None:
    """Set up the ``fvcore``, ``detectron2`` and ``alignment_det`` loggers writing to
    ``output_dir/log.txt`` (``.rank<N>`` for other ranks) as ``default_setup`` does, with
    colourless files. Call before ``default_setup(cfg, args)``."""
    # Same arguments, same form as default_setup's calls: setup_logger's cache then hands
    # default_setup these very loggers instead of adding handlers of its own.
    loggers = [
        setup_logger(output_dir, distributed_rank=rank, name="fvcore"),
        setup_logger(output_dir, distributed_rank=rank),
        setup_logger(output_dir, distributed_rank=rank, name="alignment_det"),
    ]
    for log in loggers:
        _uncolour_file_handlers(log)
