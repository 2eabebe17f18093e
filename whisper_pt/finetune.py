"""Fine-tuning in PyTorch: its own loop and ``torch.optim.AdamW``, one update per batch.

The update is the one every backend takes (see :mod:`whisper_core.finetune`): the token-mean
cross-entropy of the whole batch, accumulated over micro-batches as summed token losses divided once
by the batch's token count; gradients clipped to a global norm; AdamW with decoupled weight decay on
matrices only (not on biases and LayerNorm scales); the rate from
:func:`whisper_core.finetune.learning_rate`, set before each update. ``dtype="bfloat16"`` is mixed
precision, as in the other backends: float32 weights and optimizer, bfloat16 arithmetic under autocast.

Past one process, ``torchrun`` starts the same command on every rank: the process group comes up from
torchrun's environment (gloo on CPU, nccl on GPU), the model is wrapped in ``DistributedDataParallel``,
and each rank takes its share of every micro-batch's rows. Each rank scales its summed loss by the
world size over the whole batch's token count, so DDP's averaged gradient is the one-process gradient.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from whisper_core.finetune import FinetuneOptions, learning_rate
from whisper_core.finetune.data import IGNORE_INDEX, micro_batches
from whisper_core.finetune.updates import AfterUpdate, Batch, step_by_step

from .modeling import WhisperForConditionalGeneration, summed_cross_entropy

OPTIMIZER_FILE = "optimizer.pt"


def _process_group() -> tuple[int, int]:
    """(rank, world size): the process group torchrun describes in the environment, joined once."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


class Finetuner:
    """Trains a :class:`WhisperForConditionalGeneration` in place, update by update."""

    def __init__(self, model: WhisperForConditionalGeneration, options: FinetuneOptions, total_steps: int) -> None:
        self.model, self.options, self.total_steps, self.step = model, options, total_steps, 0
        self.rank, self.world_size = _process_group()
        self.is_main = self.rank == 0
        torch.manual_seed(options.seed)
        model.config.apply_spec_augment = options.spec_augment
        if options.freeze_encoder:
            model.freeze_encoder()
        trained = [p for p in model.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in trained if p.ndim > 1], "weight_decay": options.weight_decay},
            {"params": [p for p in trained if p.ndim <= 1], "weight_decay": 0.0},
        ]
        self.optimizer = torch.optim.AdamW(groups, lr=options.lr, betas=(0.9, 0.999), eps=1e-8)
        self.network = DistributedDataParallel(model) if self.world_size > 1 else model

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, options: FinetuneOptions, total_steps: int) -> Finetuner:
        return cls(WhisperForConditionalGeneration.from_pretrained(directory), options, total_steps)

    def _summed_loss(self, batch: dict[str, np.ndarray], network: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        features = torch.from_numpy(batch["input_features"])
        labels = torch.from_numpy(batch["labels"].astype(np.int64))
        with torch.autocast(self.model.device.type, dtype=torch.bfloat16, enabled=self.options.dtype == "bfloat16"):
            logits = (network or self.model)(input_features=features, labels=labels).logits
        return summed_cross_entropy(logits, labels)

    def train_step(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        """One update on ``batch`` (``grad_accum`` micro-batches); the loss is the batch's before the update."""
        rate = learning_rate(self.step, self.options.lr, self.total_steps, self.options.warmup)
        for group in self.optimizer.param_groups:
            group["lr"] = rate
        self.model.train()
        parts = micro_batches(batch, self.options.grad_accum)
        tokens = max(int((batch["labels"] != IGNORE_INDEX).sum()), 1)
        total = torch.zeros(())
        self.optimizer.zero_grad(set_to_none=True)
        for index, part in enumerate(parts):
            share = {key: value[self.rank :: self.world_size] for key, value in part.items()}
            last = index == len(parts) - 1
            with self.network.no_sync() if self.world_size > 1 and not last else contextlib.nullcontext():
                summed, _ = self._summed_loss(share, self.network)
                (summed * (self.world_size / tokens)).backward()
            total += summed.detach()
        if self.world_size > 1:
            dist.all_reduce(total)
        trained = [p for group in self.optimizer.param_groups for p in group["params"]]
        if self.options.max_grad_norm is None:
            norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in trained if p.grad is not None]))
        else:
            norm = torch.nn.utils.clip_grad_norm_(trained, self.options.max_grad_norm)
        self.optimizer.step()
        self.step += 1
        return {"loss": float(total) / tokens, "grad_norm": float(norm), "learning_rate": rate}

    def fit(self, batches: Iterator[Batch], steps: int, after_update: AfterUpdate) -> None:
        """``steps`` updates in this backend's own loop, each reported to ``after_update``."""
        step_by_step(self.train_step, batches, steps, after_update)

    @torch.no_grad()
    def eval_loss(self, batch: dict[str, np.ndarray]) -> tuple[float, int]:
        """(summed token loss, token count) of ``batch``, deterministic (no dropout, no SpecAugment)."""
        self.model.eval()
        summed, count = self._summed_loss(batch)
        return float(summed), int(count)

    def inference_model(self) -> Any:
        """The live model, in eval mode, for transcription between updates."""
        return self.model.eval()

    def save_model(self, directory: str | os.PathLike) -> Path:
        return self.model.save_pretrained(directory)

    def save_optimizer(self, directory: str | os.PathLike) -> None:
        torch.save({"optimizer": self.optimizer.state_dict(), "step": self.step}, Path(directory) / OPTIMIZER_FILE)

    def load_optimizer(self, directory: str | os.PathLike) -> None:
        state = torch.load(Path(directory) / OPTIMIZER_FILE, map_location="cpu", weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
