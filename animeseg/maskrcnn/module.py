"""The PyTorch Lightning module that trains a torchvision Mask R-CNN (the ``maskrcnn`` extra).

A module of its own because it imports Lightning at import time; :mod:`animeseg.train.maskrcnn` imports it only
when training. Its hyper-parameters (saved in every Lightning checkpoint) hold the model config, so a
``last.ckpt`` alone is enough to resume, and :func:`animeseg.maskrcnn.model.load_checkpoint` reads it too.
"""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
import torch

from animeseg.maskrcnn.model import ARCH, ModelConfig, build_model


class MaskRCNNModule(pl.LightningModule):
    """Mask R-CNN training: SGD with linear warm-up then cosine decay, per step.

    Args:
        config: :meth:`ModelConfig.to_dict` of the network.
        lr0, momentum, weight_decay: SGD settings.
        warmup_iters: steps of linear learning-rate warm-up (capped at a third of the run).
        freeze_bn: keep BatchNorm statistics and affine parameters fixed (fine-tuning from pretrained weights with
            small batches, as torchvision's detection recipes do).
        train_settings: what the run was started with (data, epochs, batch...), kept for ``--resume``.
    """

    def __init__(
        self,
        config: dict[str, Any],
        lr0: float = 0.005,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        warmup_iters: int = 200,
        freeze_bn: bool = False,
        train_settings: dict[str, Any] | None = None,
        arch: str = ARCH,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = build_model(ModelConfig.from_dict(config))
        if freeze_bn:
            for m in self._batchnorms():
                for p in m.parameters():
                    p.requires_grad_(False)

    def _batchnorms(self) -> list[torch.nn.Module]:
        return [m for m in self.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]

    def train(self, mode: bool = True) -> MaskRCNNModule:
        super().train(mode)
        if mode and self.hparams.freeze_bn:
            for m in self._batchnorms():
                m.eval()
        return self

    def _losses(self, batch: Any) -> dict[str, torch.Tensor]:
        images, targets = batch
        return self.model(images, targets)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        losses = self._losses(batch)
        loss = sum(losses.values())
        n = len(batch[0])
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=n, sync_dist=True)
        for k, v in losses.items():
            self.log(f"train/{k}", v, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        # torchvision's detection models return losses only in training mode; BatchNorm stays in eval mode so
        # validation does not move its statistics
        self.model.train()
        for m in self._batchnorms():
            m.eval()
        try:
            losses = self._losses(batch)
        finally:
            self.model.eval()
        n = len(batch[0])
        self.log("val/loss", sum(losses.values()), prog_bar=True, on_epoch=True, batch_size=n, sync_dist=True)
        self.log("val/loss_mask", losses["loss_mask"], on_epoch=True, batch_size=n, sync_dist=True)

    def configure_optimizers(self) -> dict[str, Any]:
        params = [p for p in self.parameters() if p.requires_grad]
        hp = self.hparams
        optimizer = torch.optim.SGD(params, lr=hp.lr0, momentum=hp.momentum, weight_decay=hp.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warm = max(1, min(int(hp.warmup_iters), total // 3))

        def factor(step: int) -> float:
            if step < warm:
                return 0.001 + 0.999 * (step + 1) / warm
            return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
