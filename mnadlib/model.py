"""The MNAD network (Park et al., CVPR 2020, Sec. 3.1): a U-Net encoder/decoder around the memory.

Layer names and order follow the authors' ``convAE`` classes so that their checkpoints map onto
ours key for key:

* prediction (``final_future_prediction_with_memory_spatial_sumonly_weight_ranking_top1.py``):
  t-1 frames in, the next frame out, skip connections after each encoder stage;
* reconstruction (``Reconstruction.py``): one frame in and out, no skips, wider upsampling.

Options the authors do not have, each off by default: ``use_memory=False`` feeds the 512-channel
query straight to the decoder (as the authors advised the MNADrc team for the no-memory
ablation), ``use_skips=False`` removes the prediction model's skips (MNADrc ablation), and
``width`` scales every channel count for small CPU presets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .config import ModelConfig
from .memory import Memory, MemoryOutput

# torch 2.13's CPU tanh (AVX2 and AVX-512 alike): the first call in a process, split over threads, can
# compute the other threads' share with a less accurate path (up to 9e-5 off; later calls are exact). It
# struck 3 of 16 fresh processes on a 12,288-value tensor, and 9 of 12 on the model's first forward
# pass, on one machine (none of 16 on another, an AMD EPYC of family 25, model 17). A first call that
# one thread does alone avoids it, so predictions repeat to the last digit.
torch.tanh(torch.zeros(1))


def _basic(c_in: int, c_out: int, last_relu: bool = True) -> nn.Sequential:
    """conv-BN-ReLU-conv-BN-ReLU (the authors' ``Basic``); without the last BN-ReLU it is ``Basic_``."""
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, 3, 1, 1),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=False),
        nn.Conv2d(c_out, c_out, 3, 1, 1),
    ]
    if last_relu:
        layers += [nn.BatchNorm2d(c_out), nn.ReLU(inplace=False)]
    return nn.Sequential(*layers)


def _upsample(c_in: int, c_out: int) -> nn.Sequential:
    """Transposed conv doubling the resolution, then BN-ReLU (the authors' ``Upsample``)."""
    return nn.Sequential(
        nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=False),
    )


def _gen(c_in: int, c_out: int, c_mid: int) -> nn.Sequential:
    """Output head: two conv-BN-ReLU then a conv to image channels and tanh (the authors' ``Gen``)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_mid, 3, 1, 1),
        nn.BatchNorm2d(c_mid),
        nn.ReLU(inplace=False),
        nn.Conv2d(c_mid, c_mid, 3, 1, 1),
        nn.BatchNorm2d(c_mid),
        nn.ReLU(inplace=False),
        nn.Conv2d(c_mid, c_out, 3, 1, 1),
        nn.Tanh(),
    )


class Encoder(nn.Module):
    """Four conv stages with three 2x poolings; returns the (B, C, H/8, W/8) feature and the skips."""

    def __init__(self, c_in: int, channels: tuple[int, int, int, int]) -> None:
        super().__init__()
        c1, c2, c3, c4 = channels
        self.moduleConv1 = _basic(c_in, c1)
        self.modulePool1 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.moduleConv2 = _basic(c1, c2)
        self.modulePool2 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.moduleConv3 = _basic(c2, c3)
        self.modulePool3 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.moduleConv4 = _basic(c3, c4, last_relu=False)
        # Defined but never called by the authors' forward; kept so their 135-entry state dict
        # (and the Adam parameter list of their Train.py) maps onto ours one to one.
        self.moduleBatchNorm = nn.BatchNorm2d(c4)
        self.moduleReLU = nn.ReLU(inplace=False)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Return (feature, skip1, skip2, skip3)."""
        skip1 = self.moduleConv1(x)
        skip2 = self.moduleConv2(self.modulePool1(skip1))
        skip3 = self.moduleConv3(self.modulePool2(skip2))
        fea = self.moduleConv4(self.modulePool3(skip3))
        return fea, skip1, skip2, skip3


class Decoder(nn.Module):
    """Mirror of the encoder; ``layout`` picks the prediction (skips) or reconstruction widths."""

    def __init__(self, c_in: int, channels: tuple[int, int, int, int], n_channel: int, layout: str, skips: bool) -> None:
        super().__init__()
        c1, c2, c3, c4 = channels
        self.skips = skips
        self.moduleConv = _basic(c_in, c4)
        if layout == "pred":
            k = 2 if skips else 1  # skip concatenation doubles the stage input
            self.moduleUpsample4 = _upsample(c4, c3)
            self.moduleDeconv3 = _basic(k * c3, c3)
            self.moduleUpsample3 = _upsample(c3, c2)
            self.moduleDeconv2 = _basic(k * c2, c2)
            self.moduleUpsample2 = _upsample(c2, c1)
            self.moduleDeconv1 = _gen(k * c1, n_channel, c1)
        else:
            self.moduleUpsample4 = _upsample(c4, c4)
            self.moduleDeconv3 = _basic(c4, c3)
            self.moduleUpsample3 = _upsample(c3, c3)
            self.moduleDeconv2 = _basic(c3, c2)
            self.moduleUpsample2 = _upsample(c2, c2)
            self.moduleDeconv1 = _gen(c2, n_channel, c1)

    def forward(self, x: Tensor, skip1: Tensor, skip2: Tensor, skip3: Tensor) -> Tensor:
        """Decode the (B, c_in, h, w) input back to a (B, n_channel, 8h, 8w) image in [-1, 1]."""
        up = self.moduleUpsample4(self.moduleConv(x))
        up = self.moduleUpsample3(self.moduleDeconv3(torch.cat((skip3, up), 1) if self.skips else up))
        up = self.moduleUpsample2(self.moduleDeconv2(torch.cat((skip2, up), 1) if self.skips else up))
        return self.moduleDeconv1(torch.cat((skip1, up), 1) if self.skips else up)


@dataclass
class ModelOutput:
    """Named results of one forward pass (the authors return 8 or 10 positional values)."""

    output: Tensor  # (B, n_channel, H, W) predicted or reconstructed frame in [-1, 1]
    fea: Tensor  # (B, C, H/8, W/8) encoder feature map (queries before normalisation)
    mem: MemoryOutput | None  # memory pass; None when the model has no memory

    @property
    def memory(self) -> Tensor | None:
        """Memory items after the pass."""
        return None if self.mem is None else self.mem.memory

    @property
    def compactness_loss(self) -> Tensor:
        """Feature compactness loss (also the evaluation's feature distance); 0 without memory."""
        return self.output.new_zeros(()) if self.mem is None else self.mem.compactness_loss

    @property
    def separateness_loss(self) -> Tensor:
        """Feature separateness loss; 0 without memory or outside training."""
        if self.mem is None or self.mem.separateness_loss is None:
            return self.output.new_zeros(())
        return self.mem.separateness_loss


class MNAD(nn.Module):
    """Encoder, memory and decoder; the memory items are passed in and returned, as the authors do."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        channels = cfg.channels
        self.encoder = Encoder(cfg.n_channel * cfg.in_frames, channels)
        dec_in = 2 * cfg.fdim if cfg.use_memory else cfg.fdim
        self.decoder = Decoder(dec_in, channels, cfg.n_channel, cfg.method, cfg.use_skips)
        self.memory = Memory(cfg.msize, cfg.fdim) if cfg.use_memory else None
        self.train_size: tuple[int, int] | None = None  # (H, W) its weights were trained at, when known (open_checkpoint sets it)

    def forward(self, x: Tensor, items: Tensor | None, train: bool = False) -> ModelOutput:
        """Run one (B, n_channel*in_frames, H, W) batch; ``train`` updates the memory and adds the separateness loss."""
        fea, skip1, skip2, skip3 = self.encoder(x)
        if self.memory is None:
            return ModelOutput(self.decoder(fea, skip1, skip2, skip3), fea, None)
        if items is None:
            raise ValueError("this model has a memory: pass its items (M, C) as the second argument")
        mem = self.memory(fea, items, train)
        return ModelOutput(self.decoder(mem.read, skip1, skip2, skip3), fea, mem)

    def split_clip(self, clip: Tensor) -> tuple[Tensor, Tensor]:
        """Split a (B, n_channel*t_length, H, W) clip into the model input and the target frame."""
        k = self.cfg.n_channel * self.cfg.in_frames
        if self.cfg.method == "recon":
            x = clip[:, -self.cfg.n_channel :]
            return x, x
        return clip[:, :k], clip[:, k:]
