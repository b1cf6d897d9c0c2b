"""Pure-torch helpers shared by every method (no Detectron2, no torchvision)."""
