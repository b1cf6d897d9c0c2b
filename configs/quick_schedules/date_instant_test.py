"""DATE-F, tiny, on the synthetic dataset: trains in well under a minute on CPU."""
from ..date_F_R50_1x import dataloader, model, optimizer, train
from .instant_common import shrink

lr_multiplier = shrink(model, dataloader, optimizer, train, output_dir="./output/date_instant_test", p6p7_from_c5=False)
# shrink() sets SGD's lr 0.01; AdamW wants the DATE order of magnitude (from scratch: 1e-3).
optimizer.lr = 1e-3
model.head.norm = "GN"  # 32 groups divide the tiny head's 64 channels
