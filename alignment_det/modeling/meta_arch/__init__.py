"""Meta-architectures: thin subclasses of Detectron2's RetinaNet / FCOS."""
