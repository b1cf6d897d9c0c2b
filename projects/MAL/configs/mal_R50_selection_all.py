"""MAL R50 ablation (paper Table 1b "S(all)"): mean-max over the whole bag, no all -> top-1 schedule,
no depression. This is FreeAnchor's likelihood, the bag loss of the released code (docs/methods.md#mal-choices)."""
from ....configs.mal_R50 import dataloader, lr_multiplier, model, optimizer, train

model.selection = "all"
model.depression_schedule = "off"
train.output_dir = "./output/mal_R50_selection_all"
