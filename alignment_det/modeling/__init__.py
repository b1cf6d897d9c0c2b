"""Detectron2 layer: meta-architectures and heads that call the pure tensor layer."""
