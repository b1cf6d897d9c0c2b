#!/usr/bin/env python
"""Train or evaluate an alignment_det (or Detectron2) LazyConfig.

    python train_net.py --config-file configs/mal_R101.py --num-gpus 8
    python train_net.py --config-file configs/mal_R101.py --eval-only train.init_checkpoint=...

All logic lives in ``alignment_det.engine`` so that the installed package and a
checkout behave alike.
"""
from alignment_det.engine import invoke_main

if __name__ == "__main__":
    invoke_main()
