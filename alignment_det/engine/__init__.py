"""Training engine: the LazyConfig trainer, CPU-aware DDP, the CLI behind train_net.py."""
from .cli import argument_parser, invoke_main, main
from .trainer import Trainer, build_eval_model, build_model, create_ddp_model

__all__ = ["Trainer", "argument_parser", "build_eval_model", "build_model", "create_ddp_model", "invoke_main", "main"]
