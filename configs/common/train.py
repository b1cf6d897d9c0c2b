"""The ``train`` keys that ``alignment_det.engine.Trainer`` reads."""
train = dict(
    output_dir="./output",
    init_checkpoint="",
    max_iter=90000,
    amp=dict(enabled=False),  # CUDA only; the trainer refuses it on CPU
    ddp=dict(broadcast_buffers=False, find_unused_parameters=False, fp16_compression=False),
    checkpointer=dict(period=5000, max_to_keep=100),
    eval_period=5000,
    log_period=20,
    device="cuda",
    seed=-1,
    # Gradient clipping inside optimizer.step: clip_type full_model | norm | value.
    clip_grad=dict(enabled=False, clip_type="full_model", clip_value=1.0, norm_type=2.0),
)
