"""A reversible transformer: 24 blocks of self-attention and MLP whose activation memory does not
grow with depth, built from the generic engine (core.Coupling / ReversibleBlock / Segment).

Each block carries a pair ``(a, b)`` of token sequences ``(batch, tokens, channels)``:
``a2 = a + Attention(LayerNorm(b))``, then ``b2 = b + MLP(LayerNorm(a2))``.

Run it: ``python examples/reversible_transformer.py`` (a few training steps on a toy task,
then the bytes each memory mode keeps for backward).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import core


class SelfAttention(nn.Module):
    """``MultiheadAttention(LayerNorm(x))`` on ``(batch, tokens, channels)``."""

    def __init__(self, channels: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.attn = nn.MultiheadAttention(channels, heads, dropout=dropout, batch_first=True)

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm(x)
        return self.attn(h, h, h, need_weights=False)[0]


class MLP(nn.Module):
    """``Linear(GELU(Linear(LayerNorm(x))))`` with an optional dropout."""

    def __init__(self, channels: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.body = nn.Sequential(nn.LayerNorm(channels), nn.Linear(channels, hidden), nn.GELU(),
                                  nn.Dropout(dropout), nn.Linear(hidden, channels))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


def reversible_transformer(channels: int = 64, blocks: int = 24, heads: int = 4,
                           dropout: float = 0.0, memory: str = "reversible",
                           **mode) -> core.ReversibleSegment:
    """``blocks`` reversible attention/MLP blocks on pairs of ``(batch, tokens, channels)``."""
    return core.ReversibleSegment(
        [core.ReversibleBlock(core.Coupling(SelfAttention(channels, heads, dropout)),
                              core.Coupling(MLP(channels, 4 * channels, dropout)))
         for _ in range(blocks)],
        memory=memory, **mode)


class Classifier(nn.Module):
    """Embed tokens, duplicate them into the pair, run the segment, classify the mean token."""

    def __init__(self, vocab: int, classes: int, channels: int = 64, blocks: int = 24, **kw):
        super().__init__()
        self.embed = nn.Embedding(vocab, channels)
        self.pos = nn.Parameter(torch.zeros(1, 64, channels))
        self.body = reversible_transformer(channels, blocks, **kw)
        self.head = nn.Linear(2 * channels, classes)

    def forward(self, tokens: Tensor) -> Tensor:
        x = self.embed(tokens) + self.pos[:, :tokens.shape[1]]
        a, b = self.body(x, x)
        return self.head(torch.cat([a, b], dim=-1).mean(dim=1))


def toy_batch(batch: int, tokens: int, vocab: int, generator: torch.Generator):
    """Sequences of random tokens; the label says whether most tokens are in the lower half."""
    x = torch.randint(0, vocab, (batch, tokens), generator=generator)
    y = ((x < vocab // 2).sum(dim=1) * 2 > tokens).long()
    return x, y


def main(steps: int = 30, blocks: int = 24, channels: int = 64, batch: int = 16,
         tokens: int = 32) -> dict:
    torch.manual_seed(0)
    vocab = 16
    model = Classifier(vocab, 2, channels, blocks)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    held_out = toy_batch(256, tokens, vocab, g)

    def held_out_loss() -> float:
        with torch.no_grad():
            return F.cross_entropy(model(held_out[0]), held_out[1]).item()

    before, losses = held_out_loss(), []
    for _ in range(steps):
        x, y = toy_batch(batch, tokens, vocab, g)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    after = held_out_loss()
    print(f"{blocks} reversible blocks, held-out loss {before:.3f} -> {after:.3f} "
          f"after {steps} steps")

    x, y = toy_batch(batch, tokens, vocab, g)
    saved = {}
    for mode, kw in [("standard", {}), ("checkpoint", {}), ("reversible", {}),
                     ("budget", {"mib": 4.0})]:
        model.body.set_memory_mode(mode, **kw)
        with core.SavedTensorMeter(exclude=model.parameters()) as meter:
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        saved[mode] = meter.bytes
        plan = model.body.memory_plan()
        note = f" ({plan.rebuilt} rebuilt, {len(plan.stored)} stored)" if plan else ""
        print(f"  {mode:<10} keeps {meter.bytes / 2**20:7.2f} MiB for backward{note}")
    return dict(losses=losses, before=before, after=after, saved=saved)


if __name__ == "__main__":
    main()
