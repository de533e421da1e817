"""The memory module of MNAD (Park et al., CVPR 2020, Sec. 3.2): read, update and the two losses.

It reproduces the authors' ``Memory`` classes (``model/memory_final_spatial_sumonly_weight_ranking_top1.py``
for prediction and ``model/Memory.py`` for reconstruction, which compute the same quantities) with
vectorised tensor operations instead of Python loops over items:

* queries are the encoder's feature map, L2-normalised over channels (Eq. 1 uses cosine similarity);
* scores ``q . m^T`` (no temperature: the authors store ``temp_*`` but never use them), softmax over
  items for reading (Eq. 1) and over all query positions of the batch for updating (Eq. 3);
* read = concat(query, sum_m softmax_memory * item), the softmax detached (Eq. 2);
* update: each item adds the queries whose nearest item it is, each weighted by its query-side
  score divided by the item's largest query-side score, then is L2-normalised again (Eq. 4);
  the sum is accumulated in a float32 buffer exactly as the authors' ``torch.zeros`` does;
* compactness loss = MSE(query, nearest item) (Eq. 7); separateness loss = triplet margin 1.0
  with the nearest item as positive and the second nearest as negative (Eq. 8).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class MemoryOutput:
    """Everything one pass through the memory produces."""

    read: Tensor  # (B, 2C, h, w) query concatenated with the read memory
    memory: Tensor  # (M, C) items after the pass (updated when training, unchanged otherwise)
    query: Tensor  # (B*h*w, C) L2-normalised queries
    score_query: Tensor  # (B*h*w, M) softmax over queries, per item
    score_memory: Tensor  # (B*h*w, M) softmax over items, per query
    nearest: Tensor  # (B*h*w,) index of each query's nearest item
    compactness_loss: Tensor  # scalar MSE(query, nearest item)
    separateness_loss: Tensor | None  # scalar triplet loss; computed only when training


def init_items(msize: int, fdim: int, generator: torch.Generator | None = None) -> Tensor:
    """Random memory items as the authors initialise them: normalised uniform noise, (M, C)."""
    return F.normalize(torch.rand((msize, fdim), generator=generator), dim=1)


def flatten_queries(fea: Tensor) -> Tensor:
    """L2-normalise the (B, C, h, w) feature map over C and flatten it to (B*h*w, C) queries."""
    b, c, h, w = fea.shape
    query = F.normalize(fea, dim=1).permute(0, 2, 3, 1)  # (B, h, w, C)
    return query.contiguous().view(b * h * w, c)


def scores(query: Tensor, items: Tensor) -> tuple[Tensor, Tensor]:
    """Cosine scores softmaxed over queries (dim 0) and over items (dim 1), each (N, M)."""
    score = torch.matmul(query, items.t())  # (N, M)
    return F.softmax(score, dim=0), F.softmax(score, dim=1)


def update(query: Tensor, items: Tensor, score_query: Tensor, score_memory: Tensor) -> Tensor:
    """Return the updated, re-normalised and detached items (Eq. 4), vectorised over items."""
    nearest = torch.topk(score_memory, 1, dim=1).indices[:, 0]  # (N,)
    weight = score_query.gather(1, nearest[:, None])[:, 0] / score_query.max(dim=0).values[nearest]  # (N,)
    summed = torch.zeros_like(items, dtype=query.dtype).index_add_(0, nearest, weight[:, None] * query)
    delta = summed.to(torch.float32)  # the authors accumulate into a float32 buffer
    return F.normalize(delta + items, dim=1).detach()


def update_from_features(fea: Tensor, items: Tensor) -> Tensor:
    """Update the items with a test frame's features, as Evaluate.py does below the threshold."""
    query = flatten_queries(fea)
    score_query, score_memory = scores(query, items)
    return update(query, items, score_query, score_memory)


def nearest_distance(fea: Tensor, items: Tensor) -> Tensor:
    """Per-position squared distance to the nearest item, averaged over C: (B, h, w).

    The mean over all positions equals the compactness loss, i.e. the paper's feature distance.
    """
    b, _, h, w = fea.shape
    query = flatten_queries(fea)
    _, score_memory = scores(query, items)
    nearest = torch.topk(score_memory, 1, dim=1).indices[:, 0]
    return ((query - items[nearest]) ** 2).mean(dim=1).view(b, h, w)


class Memory(torch.nn.Module):
    """Memory of ``msize`` items of ``fdim`` channels; holds no parameters, items travel with the caller."""

    def __init__(self, msize: int, fdim: int) -> None:
        super().__init__()
        self.msize = msize
        self.fdim = fdim

    def forward(self, fea: Tensor, items: Tensor, train: bool) -> MemoryOutput:
        """Read from (and, when ``train``, update) the memory for a (B, C, h, w) feature map."""
        b, c, h, w = fea.shape
        if tuple(items.shape) != (self.msize, self.fdim) or c != self.fdim:
            raise ValueError(f"memory items of shape {tuple(items.shape)} and queries of {c} channels do not fit this "
                             f"memory of {self.msize} items of {self.fdim} channels: use the items saved with the "
                             "model's checkpoint")
        query = flatten_queries(fea)  # (N, C)
        score_query, score_memory = scores(query, items)
        if train:
            top2 = torch.topk(score_memory, 2, dim=1).indices  # (N, 2)
            nearest = top2[:, 0]
            positive = items[nearest].detach()
            negative = items[top2[:, 1]].detach()
            separateness = F.triplet_margin_loss(query, positive, negative, margin=1.0)
        else:
            nearest = torch.topk(score_memory, 1, dim=1).indices[:, 0]
            positive = items[nearest].detach()
            separateness = None
        compactness = F.mse_loss(query, positive)
        read = torch.matmul(score_memory.detach(), items)  # (N, C)
        concat = torch.cat((query, read), dim=1).view(b, h, w, 2 * c).permute(0, 3, 1, 2)  # (B, 2C, h, w)
        new_items = update(query, items, score_query, score_memory) if train else items
        return MemoryOutput(
            read=concat,
            memory=new_items,
            query=query,
            score_query=score_query,
            score_memory=score_memory,
            nearest=nearest,
            compactness_loss=compactness,
            separateness_loss=separateness,
        )
