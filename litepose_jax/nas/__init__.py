"""LitePose architecture search (nas spec): search space, weight-sharing supernet, subnet extraction.

Command lines: `python -m litepose_jax.nas.search` (evolutionary search), `python -m litepose_jax.nas.transfer`
(subnet → standalone checkpoint); docs/nas.md.
"""

from litepose_jax.nas.apply import MaskedSupernet, apply_masked, apply_subnet, init, num_keypoints_of
from litepose_jax.nas.convert import ConversionError, convert_supernet
from litepose_jax.nas.slicing import extract
from litepose_jax.nas.bn_calibration import recalibrate
from litepose_jax.nas.sampler import Sampler, sample_step, sample_uniform
from litepose_jax.nas.space import (CHOICES, GENES, LARGEST, RESOLUTIONS, SMALLEST, WIDTH_MULTS, Subnet,
                                    subnet_from_arch)
from litepose_jax.nas.supernet import Supernet, subnet_masks
from litepose_jax.nas.supernet_io import load_supernet

__all__ = ['CHOICES', 'ConversionError', 'GENES', 'LARGEST', 'RESOLUTIONS', 'SMALLEST', 'Subnet',
           'Supernet', 'WIDTH_MULTS', 'apply_masked', 'apply_subnet', 'convert_supernet', 'extract', 'init',
           'load_supernet', 'num_keypoints_of', 'recalibrate', 'sample_step', 'sample_uniform', 'Sampler',
           'subnet_from_arch', 'subnet_masks']
