"""spamcam's PyTorch stage: CAM networks, pooling, datasets, training and checkpoints."""
