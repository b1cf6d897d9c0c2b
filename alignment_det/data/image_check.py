"""Every image of a dataset checked when it is loaded, and image reads that name their file.

Detectron2 opens an image only when the sampler draws it, so a missing or broken file ends a
run at some iteration of training, or after the whole training when it is a test image, with
an ``OSError`` that does not say which file. Here :func:`check_images` (run by
``get_dataset_dicts`` on every dataset it loads) checks each image first: the file exists and
PIL decodes its header (``Image.verify``; for PNG it also checks every chunk's CRC), in a pool
of threads (the work is file reads), logging its progress on large sets. Failures are listed
by file in one error, or, with ``skip_bad=True``, left out with one warning.

``verify`` does not decode the pixels, so a JPEG cut short still passes; reading it later
fails. :class:`ImageNamingMapper` wraps a dataset mapper so that such a read fails with an
error naming the file.
"""
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, Optional, Sequence

from PIL import Image

logger = logging.getLogger("alignment_det")

__all__ = ["BadImagesError", "ImageNamingMapper", "ImageReadError", "check_images", "image_problem"]

PROGRESS_MIN_IMAGES = 2000  # smaller sets are checked in about a second: no progress lines
_PROGRESS_PERIOD_S = 10.0
_CHUNK = 256  # images per task of the thread pool
_LISTED = 50  # failures listed in the error or warning, the rest counted


class BadImagesError(OSError):
    pass


class ImageReadError(OSError):
    pass


def image_problem(path: str) -> Optional[str]:
    """None when ``path`` exists and PIL decodes its header; else what is wrong with it."""
    try:
        with Image.open(path) as image:
            image.verify()
    except FileNotFoundError:
        return "missing"
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, struct.error, ... on broken files
        return f"{type(e).__name__}: {e}"
    return None


def _num_threads() -> int:
    return min(32, 4 * (os.cpu_count() or 1))


def check_images(dataset_dicts: List[dict], *, dataset: str, skip_bad: bool = False) -> List[dict]:
    """Check every record's ``file_name`` (:func:`image_problem`); return the dicts.

    Args:
        dataset: the dataset's name(s), for the messages.
        skip_bad: leave records with a bad image out, with one warning, instead of raising
            :class:`BadImagesError`.
    """
    paths = [r["file_name"] for r in dataset_dicts if "file_name" in r]
    if not paths:
        return dataset_dicts
    chunks = [paths[i:i + _CHUNK] for i in range(0, len(paths), _CHUNK)]
    show_progress = len(paths) >= PROGRESS_MIN_IMAGES
    start = last_log = time.perf_counter()
    if show_progress:
        logger.info("Checking the %d images of dataset %r (the file exists, its header decodes) ...", len(paths), dataset)
    problems = {}
    done = 0
    with ThreadPoolExecutor(_num_threads(), thread_name_prefix="image-check") as pool:
        for chunk, found in zip(chunks, pool.map(lambda c: [image_problem(p) for p in c], chunks)):
            problems.update((p, why) for p, why in zip(chunk, found) if why is not None)
            done += len(chunk)
            now = time.perf_counter()
            if show_progress and now - last_log >= _PROGRESS_PERIOD_S and done < len(paths):
                eta = (now - start) / done * (len(paths) - done)
                logger.info("Checked %d/%d images of %r, %d bad so far. ETA=%.0f s", done, len(paths), dataset,
                            len(problems), eta)
                last_log = now
    if show_progress:
        logger.info("Checked the %d images of %r in %.1f s: %d bad.", len(paths), dataset,
                    time.perf_counter() - start, len(problems))
    if not problems:
        return dataset_dicts
    listed = "\n".join(f"  {p}: {why}" for p, why in list(problems.items())[:_LISTED])
    more = f"\n  ... and {len(problems) - _LISTED} more" if len(problems) > _LISTED else ""
    summary = f"Dataset {dataset!r}: {len(problems)} of {len(paths)} images are missing or unreadable:\n{listed}{more}\n"
    if not skip_bad:
        raise BadImagesError(
            f"{summary}Restore or replace these files, or set skip_bad_images=True on the dataset "
            "(e.g. dataloader.train.dataset.skip_bad_images=True, dataloader.test.dataset.skip_bad_images=True) "
            "to leave them out with a warning."
        )
    logger.warning(f"{summary}They are left out (skip_bad_images=True).")
    return [r for r in dataset_dicts if r.get("file_name") not in problems]


class ImageNamingMapper:
    """A dataset mapper whose failures to read an image name the file: it calls ``mapper`` and
    turns an ``OSError`` or ``SyntaxError`` (what PIL raises on a broken file, e.g. ``image file
    is truncated``) into an :class:`ImageReadError` with the record's ``file_name``."""

    def __init__(self, mapper: Callable[[dict], Optional[dict]]):
        self.mapper = mapper

    def __call__(self, dataset_dict: dict):
        try:
            return self.mapper(dataset_dict)
        except (OSError, SyntaxError) as e:
            if isinstance(e, ImageReadError):
                raise
            file_name = dataset_dict.get("file_name", "<no file_name>")
            raise ImageReadError(
                f"Reading image {file_name} (image_id {dataset_dict.get('image_id')!r}) failed: {type(e).__name__}: {e}. "
                "Replace the file, or remove it from the dataset (a file cut short can pass the check of its "
                "header made when the dataset is loaded)."
            ) from e

    def __repr__(self):
        return f"ImageNamingMapper({self.mapper!r})"

