"""LitePose architectures: the searched XS/S/M/L tables and the authors' architecture-JSON format.

An architecture is data (`Arch`); the network in `litepose.py` is built from it. The four published
configurations are the authors' `mobile_configs/search-{XS,S,M,L}.json` (spec table a.4): every stage has
constant width, every block expansion 6 and kernel 7.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping, Tuple, Union

# The network's input normalisation (ImageNet RGB mean / std of [0, 1] pixels, as the authors' transforms):
# the data pipeline, the test-time path and the exporters' calibration all normalise with these.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
  """Rounds a channel count to a multiple of `divisor`, never going below 90% of `v` (spec a.4)."""
  min_value = divisor if min_value is None else min_value
  new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
  if new_v < 0.9 * v:
    new_v += divisor
  return new_v


@dataclasses.dataclass(frozen=True)
class Stage:
  """One backbone stage: `len(blocks)` inverted-residual blocks, the first with `stride`."""
  channels: int
  stride: int
  blocks: Tuple[Tuple[int, int], ...]  # per block: (expansion t, depthwise kernel size k)


@dataclasses.dataclass(frozen=True)
class Arch:
  """A LitePose architecture.

  Attributes:
    name: 'xs', 's', 'm', 'l' or a user name.
    img_size: training / test input resolution I (outputs at I/4 and I/2).
    stem_channels: C0, the stem output width.
    stages: the four backbone stages (strides 2, 2, 2, 1 in every published config).
    deconv_channels: (f0, f1, f2), widths of the three fusion-deconv levels.
  """
  name: str
  img_size: int
  stem_channels: int
  stages: Tuple[Stage, ...]
  deconv_channels: Tuple[int, int, int]

  def __post_init__(self):
    if len(self.stages) != 4:
      raise ValueError(f'arch {self.name}: expected 4 backbone stages, got {len(self.stages)}')
    if len(self.deconv_channels) != 3:
      raise ValueError(f'arch {self.name}: expected 3 deconv channels, got {self.deconv_channels}')
    strides = tuple(s.stride for s in self.stages)
    if strides != (2, 2, 2, 1):
      # The fusion head adds stage-3 and stage-4 features at 1/16 and the stem at 1/2: other strides would
      # not line up.
      raise ValueError(f'arch {self.name}: stage strides must be (2, 2, 2, 1), got {strides}')
    if self.img_size % 16:
      raise ValueError(f'arch {self.name}: img_size must be divisible by 16, got {self.img_size}')

  @classmethod
  def from_json(cls, spec: Union[str, os.PathLike, Mapping[str, Any]], name: str | None = None) -> 'Arch':
    """Parses the authors' JSON format (a path, a JSON string or a dict).

    Fields: img_size, input_channel, deconv_setting [f0, f1, f2], backbone_setting = list of
    {num_blocks, stride, channel, block_setting: [[t, k], ...]}. Widths go through make_divisible as in the
    authors' code (width multiplier 1.0).
    """
    source = str(spec) if not isinstance(spec, Mapping) else '<dict>'
    if not isinstance(spec, Mapping):
      text = str(spec)
      if not text.lstrip().startswith('{'):
        with open(text) as f:
          text = f.read()
      try:
        spec = json.loads(text)
      except json.JSONDecodeError as e:
        raise ValueError(f'architecture JSON {source}: {e}') from None
    try:
      stages = []
      for s in spec['backbone_setting']:
        blocks = tuple((int(t), int(k)) for t, k in s['block_setting'][:int(s['num_blocks'])])
        if len(blocks) != int(s['num_blocks']):
          raise ValueError(f'num_blocks {s["num_blocks"]} but only {len(blocks)} block_setting entries')
        stages.append(Stage(make_divisible(s['channel']), int(s['stride']), blocks))
      return cls(name=name or spec.get('name', 'custom'), img_size=int(spec['img_size']),
                 stem_channels=make_divisible(spec['input_channel']), stages=tuple(stages),
                 deconv_channels=tuple(int(c) for c in spec['deconv_setting']))
    except KeyError as e:
      raise ValueError(f'architecture JSON {source}: missing field {e}') from None

  def to_json(self) -> dict:
    """The authors' JSON format (round-trips through `from_json`)."""
    return {
        'img_size': self.img_size,
        'input_channel': self.stem_channels,
        'deconv_setting': list(self.deconv_channels),
        'backbone_setting': [{
            'num_blocks': len(s.blocks), 'stride': s.stride, 'channel': s.channels,
            'block_setting': [list(b) for b in s.blocks]} for s in self.stages],
    }


def _searched(name: str, img_size: int, stem: int, channels: Tuple[int, int, int, int],
              deconv: Tuple[int, int, int]) -> Arch:
  # All published models: 6/8/10/10 blocks, strides 2/2/2/1, t=6, k=7 everywhere (spec a.2, a.4).
  stages = tuple(Stage(c, s, ((6, 7),) * n) for c, s, n in zip(channels, (2, 2, 2, 1), (6, 8, 10, 10)))
  return Arch(name=name, img_size=img_size, stem_channels=stem, stages=stages, deconv_channels=deconv)


ARCHS = {
    'xs': _searched('xs', 256, 16, (16, 32, 48, 80), (16, 24, 24)),
    's': _searched('s', 448, 16, (16, 32, 48, 120), (32, 24, 32)),
    'm': _searched('m', 448, 16, (24, 48, 72, 120), (64, 40, 32)),
    'l': _searched('l', 512, 24, (24, 64, 96, 160), (64, 40, 32)),
}


def get_arch(arch: Union[str, Arch, Mapping[str, Any]]) -> Arch:
  """'xs' | 's' | 'm' | 'l' (also 'search-XS' etc.), a path to an authors' JSON, a dict, or an Arch."""
  if isinstance(arch, Arch):
    return arch
  if isinstance(arch, Mapping):
    return Arch.from_json(arch)
  key = str(arch).lower().removeprefix('litepose-').removeprefix('search-').removeprefix('litepose_')
  if key in ARCHS:
    return ARCHS[key]
  if str(arch).endswith('.json') or str(arch).lstrip().startswith('{'):
    return Arch.from_json(arch)
  raise ValueError(f'unknown architecture {arch!r}: use one of {sorted(ARCHS)} or an architecture JSON')
