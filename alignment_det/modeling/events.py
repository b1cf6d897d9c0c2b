"""Logging new training quantities to Detectron2's EventStorage (metrics.json, TensorBoard)."""
from typing import Optional

from detectron2.utils.events import EventStorage, get_event_storage


def current_storage() -> Optional[EventStorage]:
    """The EventStorage of the running trainer, or None outside one (a bare forward in a script)."""
    try:
        return get_event_storage()
    except (AssertionError, IndexError):  # Detectron2 asserts; IndexError when asserts are stripped (-O)
        return None


def put_scalars(*, smoothing_hint: bool = True, **values: float) -> None:
    """``storage.put_scalar`` for each value; a no-op outside an EventStorage.

    ``smoothing_hint=False`` for schedule values (ALWA weight, depression ratio): the writers
    then record each step's exact value rather than a 20-step median.
    """
    storage = current_storage()
    if storage is not None:
        for name, value in values.items():
            storage.put_scalar(name, float(value), smoothing_hint=smoothing_hint)
