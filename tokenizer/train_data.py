"""The tokenizer trainer's images: a map-style view of a `datasets.Dataset` and the batches of one epoch.

Owns `ImageSet` ((index, epoch) keys -> [3, S, S] tensors in [-1, 1]; the random flip is a pure function of
(seed, epoch, index), so a resumed run repeats it) and `image_batches` (a DataLoader over given batches of
indices that never touches the global RNG). Which indices form the batches is `trainer_state.batches_for`.
"""

from __future__ import annotations


class ImageSet:
    """Map-style view of a `datasets.Dataset` giving [3, S, S] tensors in [-1, 1] for (index, epoch) keys."""

    def __init__(self, dataset, processor, column: str, flip: bool, seed: int):
        if column not in dataset.column_names:
            raise ValueError(f"dataset has no image column {column!r} (train.image_column); columns: "
                             f"{dataset.column_names}")
        self.dataset, self.processor, self.column, self.flip, self.seed = dataset, processor, column, flip, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        import torch

        index, epoch = key
        image = self.dataset[int(index)][self.column]
        pixels = self.processor(images=[image], return_tensors="pt")["pixel_values"][0]  # [3, S, S]
        if self.flip:  # a pure function of (seed, epoch, index), so resuming repeats it
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch * 65_537 + int(index))
            if torch.rand((), generator=g) < 0.5:
                pixels = pixels.flip(-1)
        return pixels

    def batch(self, indices, epoch: int = 0):
        """The images at `indices` as one [N, 3, S, S] tensor."""
        import torch

        return torch.stack([self[(i, epoch)] for i in indices])


def _collate(items):
    import torch

    return torch.stack(items)  # [B, 3, S, S]


def image_batches(image_set: ImageSet, batches: list[list[int]], epoch: int, num_workers: int, seed: int):
    """A DataLoader giving [B, 3, S, S] for each batch of indices in `batches`, in order."""
    import torch
    from torch.utils.data import DataLoader

    keyed = [[(i, epoch) for i in batch] for batch in batches]
    return DataLoader(image_set, batch_sampler=keyed, collate_fn=_collate, num_workers=num_workers,
                      generator=torch.Generator().manual_seed(seed + epoch))  # never touches the global RNG
