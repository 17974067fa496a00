"""Modality tokenisers: turn preprocessed pixels / log-mel frames into token embeddings for the
shared MiniLM backbone (``inputs_embeds``), with a validity mask."""

from __future__ import annotations

import torch
from torch import nn

from synesthesia.models.minilm.config import AudioCfg, ImageCfg


class ConvBlock(nn.Module):
    """3x3 conv -> BatchNorm -> GELU, with a residual path when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(cout)
        self.act = nn.GELU()
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.norm(self.conv(x)))
        return x + y if self.residual else y


def conv_stages(cin: int, channels: tuple[int, ...], blocks: int, patchify: bool) -> nn.Sequential:
    """The conv tokeniser body: each of ``channels`` is a stage that halves both axes, followed by
    ``blocks - 1`` shape-keeping residual blocks. ``patchify``: the first stage is a 2x2
    stride-2 conv (+ norm, GELU) instead of a 3x3 block, the layout the image stem has always
    had, so an audio stem built the same way can start from a trained image stem's weights."""
    layers: list[nn.Module] = []
    c = list(channels)
    if patchify:
        layers += [nn.Conv2d(cin, c[0], 2, stride=2, bias=False), nn.BatchNorm2d(c[0]), nn.GELU()]
        cin, c = c[0], c[1:]
    for cout in c:
        layers.append(ConvBlock(cin, cout, stride=2))
        layers.extend(ConvBlock(cout, cout, stride=1) for _ in range(blocks - 1))
        cin = cout
    return nn.Sequential(*layers)


class ImageStem(nn.Module):
    """[B, 3, S, S] -> tokens [B, (S/2^k)^2, dim]: a 2x2 patchify conv, then stride-2 stages."""

    def __init__(self, cfg: ImageCfg, dim: int) -> None:
        super().__init__()
        self.body = conv_stages(3, cfg.channels, cfg.blocks_per_stage, patchify=True)
        self.proj = nn.Linear(cfg.channels[-1], dim)

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.body(pixels)  # [B, C, g, g]
        tokens = self.proj(f.flatten(2).transpose(1, 2))
        valid = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return tokens, valid


class AudioStem(nn.Module):
    """Log-mel [B, T, M] (+ valid frame counts) -> one token per 2^k frames [B, T', dim]."""

    def __init__(self, cfg: AudioCfg, dim: int) -> None:
        super().__init__()
        c = cfg.channels
        self.body = conv_stages(1, c, cfg.blocks_per_stage, cfg.patchify)
        self.stride = 2 ** len(c)
        mel_out = cfg.num_mel_bins
        for _ in c:
            mel_out = (mel_out + 1) // 2
        self.proj = nn.Linear(c[-1] * mel_out, dim)
        # frames that can reach a token: the body's receptive field along time
        self.reach = 1
        jump = 1
        for conv in (m for m in self.body.modules() if isinstance(m, nn.Conv2d)):
            self.reach += (conv.kernel_size[1] - 1) * jump
            jump *= conv.stride[1]

    def forward(
        self, fbank: torch.Tensor, frames: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.training and frames.numel():
            # Serving pads short clips (and the busiest excerpt) to a full window. Frames further
            # than the receptive field past the last valid one cannot reach a valid token, so
            # they are cut off (a multiple of the stride keeps the tokens aligned): the same
            # vectors, less compute. Training keeps them, as BatchNorm's batch statistics do.
            keep = -(-(int(frames.max()) + self.reach) // self.stride) * self.stride
            fbank = fbank[:, : max(self.stride, keep)]
        x = fbank.transpose(1, 2).unsqueeze(1)  # [B, 1, M, T]
        f = self.body(x)  # [B, C, M', T']
        b, ch, m, t = f.shape
        tokens = self.proj(f.permute(0, 3, 1, 2).reshape(b, t, ch * m))
        starts = torch.arange(t, device=fbank.device) * self.stride
        valid = starts[None, :] < frames[:, None]
        return tokens, valid
