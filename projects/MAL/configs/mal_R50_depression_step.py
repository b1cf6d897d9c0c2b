"""MAL R50 ablation (paper Table 1c): full MAL with the step depression schedule, 0 -> 50% in
six equal segments (code IA_TYPE=1)."""
from ....configs.mal_R50 import dataloader, lr_multiplier, model, optimizer, train

model.depression_schedule = "step"
train.output_dir = "./output/mal_R50_depression_step"
