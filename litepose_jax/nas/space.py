"""The LitePose search space as data (nas spec §1): genes, their choice sets, and a subnet's architecture.

Nine genes, in the authors' order: input resolution I ∈ {256, 320, 384, 448, 512}; stem width C0; deconv
widths f0, f1, f2; stage widths c1..c4. Every width is make_divisible(max·w, 8) with w ∈ {1, .75, .5, .25},
which gives (duplicates kept: the authors draw w, so C0 = 24 has probability 1/2):

  C0 {24, 24, 16, 8}   f0 {64, 48, 32, 16}   f1 {48, 40, 24, 16}   f2 {32, 24, 16, 8}
  c1 {32, 24, 16, 8}   c2 {64, 48, 32, 16}   c3 {96, 72, 48, 24}   c4 {160, 120, 80, 40}

Fixed: the stem's 3x3 conv and 3x3 depthwise (32 channels), expansion 6 (hidden width 6·in), kernel 7,
depth 6/8/10/10, stage strides 2/2/2/1. MACs follow the published (ptflops ≤ 0.6.8) convention of
`model_info`: 0.4178 G (smallest, 256 px) … 15.2798 G (largest, 512 px) for K = 14.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any, Dict, Mapping, Sequence, Tuple

from litepose_jax.models.arch import make_divisible

# Recorded in supernet checkpoints (meta 'space'): bump when genes, choices or the fixed parts change.
VERSION = 'litepose-v1'
RESOLUTIONS: Tuple[int, ...] = (256, 320, 384, 448, 512)
WIDTH_MULTS: Tuple[float, ...] = (1.0, 0.75, 0.5, 0.25)
MAX_STEM = 24
MAX_DECONV: Tuple[int, int, int] = (64, 48, 32)
MAX_STAGES: Tuple[int, int, int, int] = (32, 64, 96, 160)
DEPTHS: Tuple[int, int, int, int] = (6, 8, 10, 10)
STRIDES: Tuple[int, int, int, int] = (2, 2, 2, 1)
EXPANSION = 6
KERNEL = 7
STEM_FIXED = 32            # width of the stem's 3x3 conv and 3x3 depthwise (not searched)
# Gene order of the authors' `choices` vector (fixture key `<config>/choices`).
GENES: Tuple[str, ...] = ('img_size', 'stem', 'deconv0', 'deconv1', 'deconv2', 'stage1', 'stage2', 'stage3',
                          'stage4')
# The maximum of every width gene (the supernet's widths), in GENES[1:] order.
MAX_WIDTHS: Dict[str, int] = {'stem': MAX_STEM, **{f'deconv{i}': c for i, c in enumerate(MAX_DECONV)},
                              **{f'stage{s + 1}': c for s, c in enumerate(MAX_STAGES)}}


def width_choices(max_width: int) -> Tuple[int, ...]:
  """make_divisible(max·w, 8) for w in WIDTH_MULTS (index = the authors' choice index)."""
  return tuple(make_divisible(max_width * w, 8) for w in WIDTH_MULTS)


CHOICES: Dict[str, Tuple[int, ...]] = {'img_size': RESOLUTIONS,
                                       **{g: width_choices(m) for g, m in MAX_WIDTHS.items()}}


@dataclasses.dataclass(frozen=True)
class Subnet:
  """One architecture of the space (depth fixed at 6/8/10/10).

  Attributes:
    img_size: training / search input resolution I.
    stem: C0.
    deconv: (f0, f1, f2).
    stages: (c1, c2, c3, c4).
  """
  img_size: int
  stem: int
  deconv: Tuple[int, int, int]
  stages: Tuple[int, int, int, int]

  def __post_init__(self):
    object.__setattr__(self, 'deconv', tuple(int(c) for c in self.deconv))
    object.__setattr__(self, 'stages', tuple(int(c) for c in self.stages))
    for gene, value in self.genes().items():
      if value not in CHOICES[gene]:
        raise ValueError(f'subnet gene {gene} = {value} is not in the search space {sorted(set(CHOICES[gene]))}')

  def genes(self) -> Dict[str, int]:
    """{gene name: value} in GENES order."""
    return {'img_size': self.img_size, 'stem': self.stem,
            **{f'deconv{i}': c for i, c in enumerate(self.deconv)},
            **{f'stage{s + 1}': c for s, c in enumerate(self.stages)}}

  def widths(self) -> Dict[str, int]:
    """{width gene: channels} (the eight width genes)."""
    g = self.genes()
    del g['img_size']
    return g

  @classmethod
  def from_genes(cls, genes: Mapping[str, int]) -> 'Subnet':
    return cls(int(genes['img_size']), int(genes['stem']), tuple(genes[f'deconv{i}'] for i in range(3)),
               tuple(genes[f'stage{s}'] for s in range(1, 5)))

  @classmethod
  def from_choices(cls, choices: Sequence[int]) -> 'Subnet':
    """From the authors' choice-index vector [img_idx, C0, f0, f1, f2, c1, c2, c3, c4] (indices into
    RESOLUTIONS / WIDTH_MULTS)."""
    if len(choices) != len(GENES):
      raise ValueError(f'expected {len(GENES)} choice indices {GENES}, got {list(choices)}')
    return cls.from_genes({g: CHOICES[g][int(i)] for g, i in zip(GENES, choices)})

  def choices(self) -> Tuple[int, ...]:
    """The authors' choice indices (the first matching index where widths repeat: C0 24 → 0)."""
    return tuple(CHOICES[g].index(v) for g, v in self.genes().items())

  def to_arch_json(self) -> Dict[str, Any]:
    """The authors' architecture JSON (mobile_configs format, read by `models.create`)."""
    return {
        'img_size': self.img_size,
        'input_channel': self.stem,
        'deconv_setting': list(self.deconv),
        'backbone_setting': [{'num_blocks': n, 'stride': s, 'channel': c,
                              'block_setting': [[EXPANSION, KERNEL]] * n}
                             for n, s, c in zip(DEPTHS, STRIDES, self.stages)],
    }

  def macs(self, num_keypoints: int = 14) -> int:
    """Multiply-accumulates at img_size by the published convention (model_info 'macs_published')."""
    return _model_info(self, int(num_keypoints))['macs_published']

  def params(self, num_keypoints: int = 14) -> int:
    """Parameter count of the standalone subnet (model_info 'params')."""
    return _model_info(self, int(num_keypoints))['params']


def subnet_from_arch(arch: Mapping[str, Any] | str) -> Subnet:
  """Parses the authors' architecture JSON (dict or JSON text) into a Subnet of this space.

  Raises ValueError when the JSON is outside the space (depth other than 6/8/10/10, strides, expansion or
  kernel other than 6 and 7, or a width / resolution not among the choices).
  """
  if isinstance(arch, str):
    arch = json.loads(arch)
  try:
    stages = arch['backbone_setting']
    depths = tuple(int(s['num_blocks']) for s in stages)
    strides = tuple(int(s['stride']) for s in stages)
    blocks = {tuple(int(v) for v in b) for s in stages for b in s['block_setting'][:int(s['num_blocks'])]}
    if depths != DEPTHS or strides != STRIDES or blocks != {(EXPANSION, KERNEL)}:
      raise ValueError(f'architecture outside the search space: depths {depths} (need {DEPTHS}), strides '
                       f'{strides} (need {STRIDES}), blocks (t, k) {sorted(blocks)} (need [(6, 7)])')
    return Subnet(int(arch['img_size']), int(arch['input_channel']),
                  tuple(int(c) for c in arch['deconv_setting']), tuple(int(s['channel']) for s in stages))
  except KeyError as e:
    raise ValueError(f'architecture JSON: missing field {e}') from None


LARGEST = Subnet(RESOLUTIONS[-1], MAX_STEM, MAX_DECONV, MAX_STAGES)
SMALLEST = Subnet.from_choices((0,) + (len(WIDTH_MULTS) - 1,) * 8)


@functools.lru_cache(maxsize=4096)
def _model_info(subnet: Subnet, num_keypoints: int) -> Dict[str, Any]:
  from litepose_jax import model_info, models  # local: JAX is only needed for the count
  # The count intercepts module calls, so the depthwise form does not change it; 'xla' traces fewest ops.
  return model_info.count(models.create(subnet.to_arch_json(), num_keypoints, depthwise_impl='xla'))
