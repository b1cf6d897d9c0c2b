"""The ``train`` keys that ``alignment_det.engine.Trainer`` reads."""
train = dict(
    output_dir="./output",
    init_checkpoint="",
    max_iter=90000,
    # Autocast: dtype "float16" (CUDA, with a grad scaler) or "bfloat16" (CUDA or CPU); None picks
    # float16 on CUDA and bfloat16 on CPU. Assignment and losses stay fp32 (modeling/precision.py).
    amp=dict(enabled=False, dtype=None),
    ddp=dict(broadcast_buffers=False, find_unused_parameters=False, fp16_compression=False),
    checkpointer=dict(period=5000, max_to_keep=100),
    eval_period=5000,
    log_period=20,
    device="cuda",
    seed=-1,
    # Gradient clipping inside optimizer.step: clip_type full_model | norm | value.
    clip_grad=dict(enabled=False, clip_type="full_model", clip_value=1.0, norm_type=2.0),
    # EMA of the weights (alignment_det/engine/ema.py): decay = mmdetection's default
    # (ExpMomentumEMA momentum 0.0002); evaluations and --eval-only then use the EMA weights.
    model_ema=dict(enabled=False, decay=0.9998, use_ema_for_eval=True),
    # Scale optimizer.lr by dataloader.train.total_batch_size / dataloader.reference_batch_size
    # (mmdetection's linear rule); without it a differing batch only gets a warning.
    auto_scale_lr=False,
)
