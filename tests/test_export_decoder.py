"""Variant B (network + flip test + jitted decoder in one TFLite file) against JAX and the authors' people.

Needs litepose_jax.decode / litepose_jax.inference (the decoder issue); the module is skipped on a checkout
without them. Oracle: the authors' test path on the CrowdPose sample 103319 (XS reference weights, input
256×384): `grouped` = their parse() output (x, y, val at input resolution after adjust + refine), stored
in inference_xs_crowdpose_sample.npz.
"""

import jax
import numpy as np
import pytest

from litepose_jax import checkpoint, convert, models
from litepose_jax.export import graphs, runner, tflite

pytest.importorskip('litepose_jax.inference', reason='decoder not in this checkout')


@pytest.fixture(scope='module')
def exported(reference_dir, tmp_path_factory):
  variables = convert.torch_to_flax(
      convert.load_state_dict(reference_dir / 'litepose_xs_reference.npz'), 'xs', 14)
  ckpt = checkpoint.save_model(tmp_path_factory.mktemp('dec') / 'ckpt', variables,
                               checkpoint.model_meta(models.ARCHS['xs'], 14))
  fn = graphs.network_decoder_fn(checkpoint.load_model(ckpt, depthwise_impl='xla'))
  return fn, tflite.to_tflite(fn, (1, 256, 384, 3))


def test_decoder_file_is_builtin_only(exported):
  counts = tflite.op_counts(exported[1])
  print('variant B ops:', counts)
  assert all(':' not in n and not n.startswith(('CUSTOM', 'UNKNOWN')) for n in counts), counts
  assert {'DEPTHWISE_CONV_2D', 'TOPK_V2', 'WHILE', 'MAX_POOL_2D'} <= set(counts), counts


@pytest.mark.parametrize('xnnpack', [True, False])
def test_decoder_file_gives_the_same_people(exported, reference_dir, xnnpack):
  fn, data = exported
  z = np.load(reference_dir / 'inference_xs_crowdpose_sample.npz')
  x = z['103319/input'].transpose(0, 2, 3, 1)
  got = runner.TFLiteModel(data, xnnpack=xnnpack)(x)
  want = {k: np.asarray(v) for k, v in jax.jit(fn)(x).items()}
  np.testing.assert_array_equal(got['valid'], want['valid'])
  assert np.abs(got['keypoints'] - want['keypoints']).max() <= 1e-4
  assert np.abs(got['scores'] - want['scores']).max() <= 1e-5
  # The authors' people (all 30 slots are used on this image): same joints, positions and values.
  grouped = z['103319/grouped'][:, :, :3]
  assert got['valid'][0].sum() == len(grouped)
  assert np.abs(got['keypoints'][0, :len(grouped)] - grouped).max() <= 1e-4
  assert np.abs(got['scores'][0, :len(grouped)] - z['103319/scores']).max() <= 1e-5
