"""MAL R50 ablation (paper Table 1c): full MAL with the symmetric-step depression schedule
0 -> 50% -> 0 in twelve segments (code IA_TYPE=5). Same as configs/mal_R50.py, spelled out for the table."""
from ....configs.mal_R50 import dataloader, lr_multiplier, model, optimizer, train

model.depression_schedule = "symmetric_step"
train.output_dir = "./output/mal_R50_depression_symmetric_step"
