"""MAL R50 ablation: selection only (paper Table 1b "S(all-top1)"): the all -> top-1 bag
selection with anchor depression switched off."""
from ....configs.mal_R50 import dataloader, lr_multiplier, model, optimizer, train

model.selection = "schedule"
model.depression_schedule = "off"
train.output_dir = "./output/mal_R50_selection_only"
