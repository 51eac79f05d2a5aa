"""Run a CamNet over a dataset and collect what runtime.evaluation needs (CAMs, scores, ground truth)."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from runtime.confidence import ClassifierHead
from runtime.evaluation import Predictions
from runtime.model_info import ModelInfo
from runtime.postprocess import LocalizerParams

from .model import CamNet
from runtime.preprocess import chw_with_channels

__all__ = ["TorchSplit", "collate", "predict", "localizer_params"]


class TorchSplit(Dataset):
    """Adapts a spamcam split (Sample objects) to torch, matching the model's channel count."""

    def __init__(self, split, channels: int) -> None:
        self.split = split
        self.channels = channels

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int):
        sample = self.split[index]
        image = torch.from_numpy(chw_with_channels(sample.image, self.channels))  # grey data, RGB backbone: repeated
        return image, torch.from_numpy(sample.labels), sample.boxes


def collate(batch):
    images, labels, boxes = zip(*batch)
    return torch.stack(images), torch.stack(labels), list(boxes)


def model_info(model: CamNet) -> ModelInfo:
    """What a deployed copy of this model would carry (runtime.model_info): one source for its
    post-processing parameters and classifier head, in training and in deployment alike."""
    from .checkpoint import deploy_info

    return ModelInfo.from_checkpoint_parts(model.config, deploy_info(model))


def localizer_params(model: CamNet) -> LocalizerParams:
    return model_info(model).localizer_params()


def classifier_head(model: CamNet) -> ClassifierHead:
    """The model's pooling and output affine in numpy, for box confidences (runtime/confidence.py)."""
    return model_info(model).classifier_head()


@torch.no_grad()
def predict(model: CamNet, split, *, device: str | torch.device = "cpu", batch_size: int = 64,
            progress: bool = False) -> tuple[Predictions, float]:
    """(Predictions, mean two-way cross-entropy) for a whole split."""
    from tqdm import tqdm

    loader = DataLoader(TorchSplit(split, model.config.in_channels), batch_size=batch_size, shuffle=False,
                        collate_fn=collate)
    was_training = model.training
    model.eval()
    cams, scores, labels, boxes, losses = [], [], [], [], []
    for images, targets, gt in tqdm(loader, desc="predict", disable=not progress, leave=False):
        out = model(images.to(device))
        logits = out["logits"].float()
        losses.append(float(torch.nn.functional.cross_entropy(
            logits.reshape(-1, 2), targets.to(device).long().reshape(-1), reduction="sum")))
        cams.append(out["cam"].float().cpu().numpy())
        scores.append(torch.softmax(logits, -1)[..., 1].cpu().numpy())
        labels.append(targets.numpy())
        boxes.extend(gt)
    model.train(was_training)
    total = sum(len(b) for b in labels) * model.cam_head.out_channels
    return Predictions(np.concatenate(cams), np.concatenate(scores), np.concatenate(labels), boxes), sum(losses) / max(total, 1)
