"""A compact U-Net noise predictor ``eps_theta(x_t, t)`` (Ho et al. 2020, Sec. 4 and App. B).

Layout, for ``channels = [c_0, ..., c_{L-1}]`` (one entry per resolution, the
first at the image size, each next one at half the size):

* a 3x3 stem convolution to ``c_0``;
* down path: at level ``i``, ``blocks_per_level`` residual blocks to ``c_i`` (each
  followed by self-attention where ``attention[i]``), then a stride-2
  convolution, except at the last level;
* middle: residual block, self-attention, residual block at ``c_{L-1}``;
* up path, mirrored: ``blocks_per_level + 1`` residual blocks per level, each
  fed the matching skip connection, attention where ``attention[i]``, then a
  nearest-neighbour x2 upsample and a 3x3 convolution;
* GroupNorm, SiLU and a 3x3 convolution back to the image channels.

Time enters through a sinusoidal embedding of ``t`` (Vaswani et al. 2017, as in
Ho et al.) and a two-layer MLP; every residual block adds a learned projection
of it to its feature map. Residual blocks use GroupNorm, SiLU and dropout.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """``(batch,)`` timesteps -> ``(batch, dim)`` sin/cos features at geometric frequencies."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.to(torch.float32)[:, None] * freqs[None, :]
    emb = torch.cat([angles.sin(), angles.cos()], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class ResidualBlock(nn.Module):
    """GroupNorm-SiLU-conv, + time projection, GroupNorm-SiLU-dropout-conv, + skip."""

    def __init__(self, in_ch: int, out_ch: int, time_dim: int, groups: int, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.time = nn.Linear(time_dim, out_ch)
        self.norm2 = nn.GroupNorm(groups, out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time(temb)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return h + self.skip(x)


class SelfAttention(nn.Module):
    """Multi-head self-attention over the pixels of a feature map, with a residual."""

    def __init__(self, ch: int, groups: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.out = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)
        # (3, b, heads, hw, c/heads), contiguous: the fused attention kernels want it so
        q, k, v = qkv.permute(1, 0, 2, 4, 3).contiguous().unbind(0)
        y = F.scaled_dot_product_attention(q, k, v)
        y = y.transpose(-1, -2).reshape(b, c, h, w)
        return x + self.out(y)


class Level(nn.Module):
    """The residual blocks (and optional attention) of one resolution on one path."""

    def __init__(self, in_chs: Sequence[int], out_ch: int, time_dim: int, groups: int,
                 dropout: float, attention: bool, heads: int):
        super().__init__()
        self.blocks = nn.ModuleList(ResidualBlock(c, out_ch, time_dim, groups, dropout) for c in in_chs)
        self.attns = nn.ModuleList(
            SelfAttention(out_ch, groups, heads) if attention else nn.Identity() for _ in in_chs
        )


class UNet(nn.Module):
    """``eps_theta(x_t, t)``: predicts the noise in ``x_t`` at 0-based timesteps ``t``."""

    def __init__(
        self,
        image_channels: int,
        channels: Sequence[int],
        attention: Sequence[bool],
        blocks_per_level: int,
        dropout: float,
        groups: int,
        heads: int,
    ):
        super().__init__()
        if len(channels) != len(attention):
            raise ValueError(f"channels {list(channels)} and attention {list(attention)} differ in length")
        self.image_channels = image_channels
        c0 = channels[0]
        time_dim = 4 * c0
        self.time_features = c0
        self.time_mlp = nn.Sequential(nn.Linear(c0, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        self.stem = nn.Conv2d(image_channels, c0, 3, padding=1)

        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skips = [c0]
        ch = c0
        for i, out in enumerate(channels):
            ins = [ch] + [out] * (blocks_per_level - 1)
            self.down.append(Level(ins, out, time_dim, groups, dropout, attention[i], heads))
            ch = out
            skips += [out] * blocks_per_level
            last = i == len(channels) - 1
            self.downsample.append(nn.Identity() if last else nn.Conv2d(ch, ch, 3, stride=2, padding=1))
            if not last:
                skips.append(ch)

        self.mid1 = ResidualBlock(ch, ch, time_dim, groups, dropout)
        self.mid_attn = SelfAttention(ch, groups, heads)
        self.mid2 = ResidualBlock(ch, ch, time_dim, groups, dropout)

        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(len(channels))):
            out = channels[i]
            ins = []
            for _ in range(blocks_per_level + 1):
                ins.append(ch + skips.pop())
                ch = out
            self.up.append(Level(ins, out, time_dim, groups, dropout, attention[i], heads))
            self.upsample.append(nn.Conv2d(ch, ch, 3, padding=1) if i > 0 else nn.Identity())
        self.out_norm = nn.GroupNorm(groups, ch)
        self.out_conv = nn.Conv2d(ch, image_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        temb = self.time_mlp(sinusoidal_embedding(t, self.time_features).to(x.dtype))
        h = self.stem(x)
        hs = [h]
        for level, down in zip(self.down, self.downsample, strict=True):
            for block, attn in zip(level.blocks, level.attns, strict=True):
                h = attn(block(h, temb))
                hs.append(h)
            if not isinstance(down, nn.Identity):
                h = down(h)
                hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, temb)), temb)
        for level, up in zip(self.up, self.upsample, strict=True):
            for block, attn in zip(level.blocks, level.attns, strict=True):
                h = attn(block(torch.cat([h, hs.pop()], dim=1), temb))
            if not isinstance(up, nn.Identity):
                h = up(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out_conv(F.silu(self.out_norm(h)))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
