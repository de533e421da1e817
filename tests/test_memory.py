"""The vectorised memory equals a literal transcription of the authors' per-item loop."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mnadlib.memory import Memory, flatten_queries, init_items, nearest_distance, scores, update


def _loop_update(query, items):
    """The authors' get_update_query + normalise, item by item (reference)."""
    score = query @ items.t()
    sq, sm = F.softmax(score, dim=0), F.softmax(score, dim=1)
    nearest = torch.topk(sm, 1, dim=1).indices
    upd = torch.zeros_like(items)
    for i in range(items.shape[0]):
        idx = torch.nonzero(nearest.squeeze(1) == i)
        if idx.shape[0]:
            upd[i] = torch.sum((sq[idx, i] / torch.max(sq[:, i])) * query[idx].squeeze(1), dim=0)
    return F.normalize(upd + items, dim=1)


@pytest.mark.parametrize("b,h,w,c,m", [(1, 4, 4, 16, 5), (2, 3, 5, 8, 10), (3, 2, 2, 32, 3)])
def test_update_matches_loop(b, h, w, c, m):
    g = torch.Generator().manual_seed(b * 100 + m)
    fea = torch.randn(b, c, h, w, generator=g, dtype=torch.float64)
    items = init_items(m, c, g).double()
    q = flatten_queries(fea)
    sq, sm = scores(q, items)
    torch.testing.assert_close(update(q, items, sq, sm), _loop_update(q, items), atol=1e-6, rtol=0)


def test_update_leaves_unpicked_items_and_normalises():
    items = F.normalize(torch.eye(4, 8), dim=1)
    fea = items[0].view(1, 8, 1, 1).repeat(1, 1, 2, 2)  # every query is item 0
    q = flatten_queries(fea)
    new = update(q, items, *scores(q, items))
    torch.testing.assert_close(new[1:], items[1:])
    torch.testing.assert_close(new.norm(dim=1), torch.ones(4))
    assert not new.requires_grad


def test_forward_train_losses_and_read():
    g = torch.Generator().manual_seed(0)
    mem = Memory(6, 8)
    fea = torch.randn(2, 8, 3, 3, generator=g, requires_grad=True)
    items = init_items(6, 8, g)
    out = mem(fea, items, train=True)
    assert out.read.shape == (2, 16, 3, 3)
    q = out.query
    top2 = (q @ items.t()).topk(2, dim=1).indices
    torch.testing.assert_close(out.compactness_loss, F.mse_loss(q, items[top2[:, 0]]))
    d_pos = (q - items[top2[:, 0]] + 1e-6).norm(dim=1)
    d_neg = (q - items[top2[:, 1]] + 1e-6).norm(dim=1)
    torch.testing.assert_close(out.separateness_loss, torch.clamp(d_pos - d_neg + 1.0, min=0).mean())
    torch.testing.assert_close(out.read[:, :8], F.normalize(fea, dim=1))
    (out.compactness_loss + out.separateness_loss).backward()
    assert fea.grad is not None and torch.isfinite(fea.grad).all()
    assert not torch.equal(out.memory, items)


def test_eval_keeps_memory_and_distance_map_averages_to_compactness():
    g = torch.Generator().manual_seed(1)
    fea = torch.randn(1, 8, 4, 4, generator=g)
    items = init_items(5, 8, g)
    out = Memory(5, 8)(fea, items, train=False)
    assert out.memory is items and out.separateness_loss is None
    dist = nearest_distance(fea, items)
    assert dist.shape == (1, 4, 4)
    torch.testing.assert_close(dist.mean(), out.compactness_loss)


def test_items_of_another_memory_are_refused():
    fea = torch.randn(1, 8, 4, 4)
    for items, c in ((init_items(6, 8), 8), (init_items(5, 4), 8), (init_items(5, 8), 4)):
        with pytest.raises(ValueError, match="do not fit this memory of 5 items of 8 channels"):
            Memory(5, 8)(fea[:, :c], items, train=False)
