"""Transformer trunk with the reference's parameter names.

The reference trunk is ``nn.MultiheadAttention`` (sequence-first) inside pre-norm blocks. This
is a batch-first re-implementation that keeps MultiheadAttention's parameter names
(``in_proj_weight`` stacks Wq, Wk, Wv; ``bias_k``/``bias_v``; ``out_proj``) so an official
checkpoint loads as-is, and runs the attention through the fused
``F.scaled_dot_product_attention``. ``fused=False`` switches a module to a plain
softmax(QK^T/sqrt(d))V path; the benchmark uses it to measure what fusion buys.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from timm.layers import Mlp
from torch import nn


class Attention(nn.Module):
    """Multi-head self-attention, numerically the reference's ``nn.MultiheadAttention``.

    With ``add_bias_kv`` the learned ``bias_k``/``bias_v`` are appended after the projection as
    one extra key/value position that every query can attend to (L + 1 keys); the audio trunk
    uses this.
    """

    def __init__(self, dim: int, num_heads: int, add_bias_kv: bool = False) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.fused = True
        # registration order = the reference's state_dict order
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.bias_k: nn.Parameter | None = None
        self.bias_v: nn.Parameter | None = None
        if add_bias_kv:
            self.bias_k = nn.Parameter(torch.zeros(1, 1, dim))
            self.bias_v = nn.Parameter(torch.zeros(1, 1, dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        if self.bias_k is not None and self.bias_v is not None:
            nn.init.xavier_normal_(self.bias_k)
            nn.init.xavier_normal_(self.bias_v)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape
        h = self.num_heads
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        if self.bias_k is not None and self.bias_v is not None:
            k = torch.cat([k, self.bias_k.expand(b, 1, d)], dim=1)
            v = torch.cat([v, self.bias_v.expand(b, 1, d)], dim=1)
            if attn_mask is not None:  # the extra key is visible to every query
                attn_mask = F.pad(attn_mask, (0, 1))
        q, k, v = (t.unflatten(-1, (h, d // h)).transpose(1, 2) for t in (q, k, v))
        if self.fused:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        else:
            scores = (q * (1.0 / math.sqrt(d // h))) @ k.transpose(-2, -1)
            if attn_mask is not None:
                scores = scores + attn_mask
            out = scores.softmax(dim=-1) @ v
        return self.out_proj(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm block: ``x + attn(norm_1(x))`` then ``x + mlp(norm_2(x))``; LayerNorm eps 1e-6,
    exact (erf) GELU. Drop-path is omitted: it is identity at inference."""

    def __init__(self, dim: int, num_heads: int, add_bias_kv: bool) -> None:
        super().__init__()
        self.attn = Attention(dim, num_heads, add_bias_kv)
        self.norm_1 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, hidden_features=4 * dim, act_layer=nn.GELU)
        self.norm_2 = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm_1(x), attn_mask)
        return x + self.mlp(self.norm_2(x))


class Trunk(nn.Module):
    """``pre_transformer_layer`` (a LayerNorm for vision, identity otherwise; a Sequential so
    the key is ``pre_transformer_layer.0``) then the blocks. No final norm: the head has it."""

    def __init__(
        self, dim: int, num_blocks: int, num_heads: int, *, pre_norm: bool, add_bias_kv: bool
    ) -> None:
        super().__init__()
        pre: nn.Module = nn.LayerNorm(dim, eps=1e-6) if pre_norm else nn.Identity()
        self.pre_transformer_layer = nn.Sequential(pre)
        self.blocks = nn.ModuleList(Block(dim, num_heads, add_bias_kv) for _ in range(num_blocks))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.pre_transformer_layer(x)
        for block in self.blocks:
            x = block(x, attn_mask)
        return x


def set_fused_attention(module: nn.Module, fused: bool) -> None:
    """Switch every Attention under ``module`` between the fused and the plain path."""
    for m in module.modules():
        if isinstance(m, Attention):
            m.fused = fused
