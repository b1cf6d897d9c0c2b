# ImageNet pixel statistics in BGR 0-255, for the MSRA (caffe) ResNet weights that
# Detectron2's RetinaNet/FCOS baselines start from.
imagenet_bgr256_mean = [103.530, 116.280, 123.675]
imagenet_bgr256_std = [1.0, 1.0, 1.0]
