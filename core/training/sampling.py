"""Deterministic batches: the data order and every sample's augmentation follow (seed, epoch).

Order: a ``DistributedSampler`` (also for a single process: one replica, rank 0) shuffles with
a generator seeded by ``seed + epoch`` and shards the permutation across ranks.

Augmentation: each sample draws its random crop/flip from torch's CPU generator *reseeded for
that sample* with a seed fixed by (seed, epoch, sample index), and the generator's previous
state is put back afterwards. So augmentation does not depend on which process or DataLoader
worker loads the sample, on what was loaded before it, or on the model's own random draws
(dropout); and a resumed run can skip the batches it already consumed without replaying them.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from core.training.distributed import DistInfo


class SeededSamples(Dataset):
    """``view[(index, seed)]`` is ``dataset[index]`` drawn with torch's CPU RNG seeded by ``seed``.

    The generator's state is restored afterwards. torchvision transforms draw from torch; a
    hand-written transform must too (Python's ``random`` and numpy's global RNG are not reseeded:
    saving and restoring them would cost ten times the torch generator's few microseconds).
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        state = torch.get_rng_state()
        torch.default_generator.manual_seed(seed)
        try:
            return self.dataset[index]
        finally:
            torch.set_rng_state(state)


def sample_seeds(n: int, seed: int, epoch: int) -> list[int]:
    """One 63-bit seed per sample index for this (seed, epoch)."""
    state = np.random.SeedSequence([seed, epoch, 0xA06]).generate_state(2 * n, dtype=np.uint32)
    pairs = state.astype(np.uint64).reshape(n, 2)
    return ((pairs[:, 0] << np.uint64(31)) ^ pairs[:, 1]).astype(np.int64).tolist()


def per_rank_batch(batch_size: int, info: DistInfo) -> int:
    """``batch_size`` is global; each rank takes an equal share."""
    if batch_size % info.world_size:
        raise ValueError(f"batch_size={batch_size} must be divisible by the number of processes "
                         f"({info.world_size}); it is the batch summed over all of them")
    return batch_size // info.world_size


def steps_per_epoch(n: int, batch: int, info: DistInfo) -> int:
    """Optimizer steps per epoch; a last partial batch is dropped unless it is the only one."""
    per_rank = math.ceil(n / info.world_size)
    return max(1, per_rank // batch)


def train_loader(dataset: Dataset, *, seed: int, epoch: int, batch: int, skip: int,
                 info: DistInfo, num_workers: int = 0, pin_memory: bool = False) -> DataLoader:
    """This rank's batches of ``epoch``, starting after the first ``skip`` of them."""
    sampler = DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank,
                                 shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    indices = list(sampler)
    drop_last = len(indices) >= batch
    seeds = sample_seeds(len(dataset), seed, epoch)
    keys = [(i, seeds[i]) for i in indices[skip * batch:]]
    # The loader's own generator only seeds worker processes; giving it one keeps the global
    # generator untouched when an iterator is created (an extra draw on resume would shift it).
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return DataLoader(SeededSamples(dataset), batch_size=batch, sampler=keys,
                      drop_last=drop_last, num_workers=num_workers, pin_memory=pin_memory,
                      generator=gen)


def eval_loader(dataset: Dataset, *, batch: int, info: DistInfo, num_workers: int = 0,
                pin_memory: bool = False) -> DataLoader:
    """This rank's share of ``dataset`` (every sample exactly once over all ranks), in order."""
    shard = Subset(dataset, range(info.rank, len(dataset), info.world_size))
    return DataLoader(shard, batch_size=batch, shuffle=False, num_workers=num_workers,
                      pin_memory=pin_memory)
