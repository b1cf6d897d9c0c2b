"""Heads that differ from Detectron2's RetinaNetHead / FCOSHead."""
