"""What `train_classifier` needs for TensorBoard logs and multi-process (DDP) training.

Distributed training is on when the process belongs to an initialised
`torch.distributed` group (as `medloop.learning.distributed` sets up under torchrun):
each rank trains on its `DistributedSampler` share of every epoch with
`DistributedDataParallel` averaging the gradients, batch-norm statistics are taken
from rank 0 after each epoch, and rank 0 decides "best epoch" and "stop" for all, so
every rank keeps the same weights. Without a group every helper is a no-op.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from medloop.exceptions import ConfigError

logger = logging.getLogger(__name__)


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of this process's distributed group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def distributed_loader(
    dataset: Dataset, *, batch_size: int, seed: int, rank: int, world: int
) -> DataLoader:
    """This rank's shuffled share of `dataset` (call `sampler.set_epoch` every epoch).

    A last batch of a single item is dropped (batch norm needs two).
    """
    sampler: DistributedSampler = DistributedSampler(
        dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed
    )
    share = len(sampler)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=0,
        drop_last=share > batch_size and share % batch_size == 1,
    )


def sync_buffers(*modules: nn.Module) -> None:
    """Copy rank 0's buffers (batch-norm running statistics) of `modules` to every rank."""
    if rank_and_world()[1] > 1:
        for module in modules:
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)


def sum_across(*values: float) -> tuple[float, ...]:
    """The sums of `values` over all ranks (the values themselves without a group)."""
    if rank_and_world()[1] == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tuple(float(v) for v in tensor)


def rank0_decides(*flags: bool) -> tuple[bool, ...]:
    """Rank 0's `flags` on every rank, so all ranks stop (and keep epochs) together."""
    if rank_and_world()[1] == 1:
        return flags
    tensor = torch.tensor([int(f) for f in flags], dtype=torch.int64)
    dist.broadcast(tensor, src=0)
    return tuple(bool(v) for v in tensor)


class TensorBoardLog:
    """Per-epoch scalars (losses, validation AUC and accuracy, learning rate) for
    TensorBoard in `log_dir`; does nothing when `log_dir` is None or on ranks other than 0.
    """

    def __init__(self, log_dir: str | Path | None) -> None:
        self.writer = None
        if log_dir is not None and rank_and_world()[0] == 0:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise ConfigError(
                    "TrainConfig.log_dir needs the tensorboard package (pip install tensorboard)"
                ) from exc
            self.writer = SummaryWriter(log_dir=str(log_dir))
            logger.info("writing TensorBoard logs to %s", log_dir)

    def epoch(self, epoch: int, record: dict[str, float], *, learning_rate: float) -> None:
        if self.writer is None:
            return
        for tag, key in (
            ("loss/train", "train_loss"),
            ("loss/val", "val_loss"),
            ("val/auc", "val_auc"),
            ("val/acc", "val_acc"),
            ("time/epoch_seconds", "seconds"),
        ):
            self.writer.add_scalar(tag, record[key], epoch)
        self.writer.add_scalar("learning_rate", learning_rate, epoch)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
