"""MAL R50 ablation (paper Table 1c): full MAL with a constant depression ratio of 50%
(code IA_TYPE=0)."""
from ....configs.mal_R50 import dataloader, lr_multiplier, model, optimizer, train

model.depression_schedule = "constant"
train.output_dir = "./output/mal_R50_depression_constant"
