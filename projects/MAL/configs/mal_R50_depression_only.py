"""MAL R50 ablation: depression only (symmetric-step schedule), no selection schedule.

Without the schedule the bag likelihood is mean-max over the whole bag, so this is exactly what the
released code trains ("S(all) + D"). It is not the paper's "RetinaNet + D" rows of Table 1c, which
keep RetinaNet's focal loss; see projects/MAL/README.md."""
from ....configs.mal_R50 import dataloader, lr_multiplier, model, optimizer, train

model.selection = "all"
model.depression_schedule = "symmetric_step"
train.output_dir = "./output/mal_R50_depression_only"
