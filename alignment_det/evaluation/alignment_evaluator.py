"""``AlignmentEvaluator``: Detectron2 ``DatasetEvaluator`` for score-vs-localisation alignment.

Add it beside ``COCOEvaluator`` in a LazyConfig (the trainer runs a list of evaluators through
Detectron2's ``DatasetEvaluators``)::

    from alignment_det.evaluation import AlignmentEvaluator

    dataloader.evaluator = [
        L(COCOEvaluator)(dataset_name="${dataloader.test.dataset.names}", output_dir="${train.output_dir}"),
        L(AlignmentEvaluator)(dataset_name="${dataloader.test.dataset.names}", output_dir="${train.output_dir}"),
    ]

(absolute interpolations: a relative ``${..x}`` changes meaning once the node sits inside a list).
It returns ``{"alignment": {metric: float}}``, so the numbers reach ``metrics.json`` and TensorBoard
as ``alignment/<metric>`` (EvalHook during training; ``train_net.py --eval-only`` writes them too),
logs a table after COCO's, and writes the full report (bins, per-class oLRP and thresholds) to
``<output_dir>/alignment_metrics.json``. Metrics: :mod:`alignment_det.evaluation.alignment_metrics`.

It works with any detector whose outputs are ``Instances`` with ``pred_boxes``/``scores``/
``pred_classes``: the NMS misranking reads the candidates each image's final NMS received through
:class:`~alignment_det.evaluation.nms_recorder.NMSRecorder` (RetinaNet, FCOS, MAL, RetinaNetConf,
Faster R-CNN; a detector without NMS, DATE, has no misranking by construction). Under several
processes every rank evaluates its images and rank 0 gathers the records.
"""
import copy
import itertools
import json
import logging
import os
from collections import OrderedDict
from typing import Dict, Iterable, List, Optional

import numpy as np
from tabulate import tabulate

from detectron2.data import DatasetCatalog
from detectron2.evaluation.evaluator import DatasetEvaluator
from detectron2.structures import BoxMode
from detectron2.utils import comm
from detectron2.utils.file_io import PathManager

from .alignment_metrics import DEFAULT_MIN_IOU, evaluate_alignment, flat_metrics, nms_misranking
from .nms_recorder import NMSCall, NMSRecorder
from .tide import require_hotcoco, tide_errors

__all__ = ["AlignmentEvaluator", "RESULTS_KEY", "format_alignment_table", "ground_truth_records"]

logger = logging.getLogger(__name__)

#: Task name of the results; flattened by Detectron2 as ``alignment/<metric>``.
RESULTS_KEY = "alignment"


def ground_truth_records(dataset_dicts: Iterable[dict]) -> Dict[int, dict]:
    """image_id -> ``{gt_boxes (G, 4) XYXY, gt_classes (G,), gt_crowd (G,), height, width}`` from
    Detectron2 dataset dicts (contiguous class ids, any ``bbox_mode``)."""
    out = {}
    for d in dataset_dicts:
        anns = d.get("annotations", [])
        boxes = np.asarray(
            [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in anns], dtype=np.float64
        ).reshape(-1, 4)
        out[d["image_id"]] = {
            "gt_boxes": boxes,
            "gt_classes": np.asarray([a["category_id"] for a in anns], dtype=np.int64),
            "gt_crowd": np.asarray([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool),
            "height": d.get("height"),
            "width": d.get("width"),
        }
    return out


def format_alignment_table(metrics: Dict[str, float], columns: int = 3) -> str:
    """The scalar metrics as a pipe table of ``columns`` (metric, value) pairs per row."""
    items = [(k, v) for k, v in metrics.items() if "-" not in k]  # per-bin values: in the json report
    flat = list(itertools.chain(*items))
    rows = itertools.zip_longest(*[flat[i:: 2 * columns] for i in range(2 * columns)])
    return tabulate(rows, headers=["metric", "value"] * columns, tablefmt="pipe", floatfmt=".4f", numalign="left")


class AlignmentEvaluator(DatasetEvaluator):
    """Alignment metrics of a detector on a registered dataset (module docstring).

    Args:
        dataset_name: registered dataset whose dicts hold the ground truth (``annotations``).
        output_dir: where to write ``alignment_metrics.json`` (the full report); None: nowhere.
        distributed: gather the records of every rank on rank 0 (Detectron2's convention).
        min_iou: lower IoU bound of the "all" correlation population (0.1).
        nms_min_iou: IoU a ground truth's best pre-NMS candidate needs to count for the NMS
            misranking (0.5).
        tide: also compute TIDE's error breakdown (needs ``pip install "alignment_det[analysis]"``;
            an error naming that command when the package is missing).
        nms_call_sites: modules whose ``batched_nms`` is a final NMS (default:
            :data:`~alignment_det.evaluation.nms_recorder.DEFAULT_NMS_CALL_SITES`).
    """

    def __init__(
        self,
        dataset_name: str,
        *,
        output_dir: Optional[str] = None,
        distributed: bool = True,
        min_iou: float = DEFAULT_MIN_IOU,
        nms_min_iou: float = 0.5,
        tide: bool = False,
        nms_call_sites: Optional[Iterable[str]] = None,
    ):
        if dataset_name not in DatasetCatalog.list():
            raise KeyError(
                f"AlignmentEvaluator: dataset {dataset_name!r} is not registered; register it "
                "(alignment_det.data.register_coco_json) or fix dataloader.test.dataset.names"
            )
        if tide:
            require_hotcoco()  # fail now, not after a whole inference pass
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._distributed = distributed
        self._min_iou = float(min_iou)
        self._nms_min_iou = float(nms_min_iou)
        self._tide = bool(tide)
        self._recorder = NMSRecorder(nms_call_sites)
        self._gt: Optional[Dict[int, dict]] = None
        self._records: List[dict] = []
        self._nms_mismatch_batches = 0
        self._nms_images = 0
        #: the full nested report of the last ``evaluate()`` (on rank 0), as in alignment_metrics.json
        self.report: Optional[dict] = None

    # ------------------------------------------------------------------ DatasetEvaluator
    def reset(self):
        self._records = []
        self._nms_mismatch_batches = 0
        self._nms_images = 0
        if self._gt is None:
            # The test loader instantiates (and for the synthetic set writes) the dataset before the
            # evaluator runs; loading here, not in __init__, keeps config instantiation cheap.
            self._gt = ground_truth_records(DatasetCatalog.get(self._dataset_name))
        self._recorder.start()  # record the final NMS of every forward until evaluate()

    def process(self, inputs, outputs):
        calls = self._recorder.pop()
        if calls and len(calls) != len(inputs):
            # Not one final NMS per image (test-time augmentation, a cascade...): no misranking here.
            self._nms_mismatch_batches += 1
            calls = None
        elif calls:
            self._nms_images += len(calls)
        for i, (inp, out) in enumerate(zip(inputs, outputs)):
            if "instances" not in out:
                continue
            inst = out["instances"].to("cpu")
            image_id = inp["image_id"]
            if image_id not in self._gt:
                raise KeyError(
                    f"AlignmentEvaluator: image_id {image_id} is not in dataset {self._dataset_name!r}; "
                    "dataloader.test and the evaluator's dataset_name must name the same dataset"
                )
            rec = dict(self._gt[image_id], image_id=image_id)
            rec["det_boxes"] = inst.pred_boxes.tensor.numpy().astype(np.float64)
            rec["det_scores"] = inst.scores.numpy().astype(np.float64)
            rec["det_classes"] = inst.pred_classes.numpy().astype(np.int64)
            if calls is not None:
                cand = self._candidates(inp, calls[i]) if calls else None
                if cand is None:  # no NMS ran (DATE): the detections are their own candidates
                    cand = (rec["det_boxes"], rec["det_scores"], rec["det_classes"], np.arange(len(inst)))
                rec["nms"] = nms_misranking(
                    *cand[:3], cand[3], rec["gt_boxes"], rec["gt_classes"], rec["gt_crowd"], min_iou=self._nms_min_iou
                )
            self._records.append(rec)

    @staticmethod
    def _candidates(inp: dict, call: NMSCall):
        """The NMS inputs of one image in the output resolution (as ``detector_postprocess`` maps
        the detections): scaled from the model's input size to (height, width), then clipped."""
        in_h, in_w = inp["image"].shape[-2:]
        out_h, out_w = inp.get("height", in_h), inp.get("width", in_w)
        boxes = call.boxes.numpy().astype(np.float64) * np.array([out_w / in_w, out_h / in_h] * 2)
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, out_w)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, out_h)
        return boxes, call.scores.numpy(), call.classes.numpy(), call.kept.numpy()

    def stop_recording(self) -> None:
        """Restore ``batched_nms`` in the call sites (``evaluate`` does it; for loops that stop early)."""
        self._recorder.stop()

    def records(self) -> List[dict]:
        """The per-image records this process collected since ``reset`` (``alignment_metrics`` format)."""
        return list(self._records)

    def evaluate(self):
        self._recorder.stop()
        if self._distributed:
            comm.synchronize()
            records = list(itertools.chain(*comm.gather(self._records, dst=0)))
            counts = comm.gather((self._nms_mismatch_batches, self._nms_images), dst=0)
            if not comm.is_main_process():
                return {}
            mismatches, nms_images = (sum(c[k] for c in counts) for k in (0, 1))
        else:
            records, mismatches, nms_images = self._records, self._nms_mismatch_batches, self._nms_images
        if not records:
            logger.warning("[AlignmentEvaluator] received no predictions with 'instances'.")
            return {}
        if mismatches:
            logger.warning(
                "[AlignmentEvaluator] %d batches did not run one final NMS per image; their images have no "
                "NMS-misranking figures (a meta-architecture calling batched_nms from another module: pass "
                "its module in nms_call_sites)", mismatches,
            )
        if nms_images == 0:
            logger.info(
                "[AlignmentEvaluator] no final NMS was recorded: the detections are their own candidates and "
                "the NMS misranking is 0 by construction (right for NMS-free detectors such as DATE; a detector "
                "calling batched_nms from a module not in nms_call_sites would be misreported)"
            )
        report = evaluate_alignment(records, min_iou=self._min_iou)
        if "nms_misranking" in report:
            report["nms_misranking"]["num_images_with_nms"] = int(nms_images)
        if self._tide:
            report["tide"] = tide_errors(records)
        metrics = flat_metrics(report)
        logger.info("Alignment metrics (score vs localisation) on %s:\n%s", self._dataset_name,
                    format_alignment_table(metrics))
        if self._output_dir:
            PathManager.mkdirs(self._output_dir)
            path = os.path.join(self._output_dir, "alignment_metrics.json")
            with PathManager.open(path, "w") as f:
                json.dump(report, f, indent=1)
            logger.info("Alignment report written to %s", path)
        self.report = report
        return OrderedDict({RESULTS_KEY: copy.deepcopy(metrics)})
