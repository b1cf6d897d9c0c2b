"""A DetectionCheckpointer that refuses checkpoints which do not fit the model.

Detectron2 only logs a warning when checkpoint keys are missing or have other shapes,
so evaluating the wrong checkpoint silently reports the AP of a random model. Here:

* ``strict=False`` (training from ``train.init_checkpoint``): missing keys and shape
  mismatches are allowed (new layers of a method, another number of classes), but a
  checkpoint of which *no* model parameter could be loaded is an error;
* ``strict=True`` (``--eval-only``): any model parameter left uninitialised is an error.
"""
from detectron2.checkpoint import DetectionCheckpointer


class CheckpointMismatchError(RuntimeError):
    pass


class CheckedCheckpointer(DetectionCheckpointer):
    def __init__(self, model, save_dir="", *, strict: bool = False, **kwargs):
        super().__init__(model, save_dir, **kwargs)
        self.strict = strict

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
