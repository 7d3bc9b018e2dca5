"""Variant B (network + flip test + jitted decoder in one TFLite file) against JAX and the authors' people,
and the TFLite predictor (the test path around an exported file, `predict.py --model`) for both variants.

Oracle: the authors' test path on the CrowdPose sample 103319 (XS reference weights, input
256×384): `grouped` = their parse() output (x, y, val at input resolution after adjust + refine), stored
in inference_xs_crowdpose_sample.npz.
"""

import jax
import numpy as np
import pytest

from litepose_jax import checkpoint, convert, models
from litepose_jax.export import __main__ as cli
from litepose_jax.export import graphs, predictor, runner, tflite


@pytest.fixture(scope='module')
def ckpt(reference_dir, tmp_path_factory):
  variables = convert.torch_to_flax(
      convert.load_state_dict(reference_dir / 'litepose_xs_reference.npz'), 'xs', 14)
  return checkpoint.save_model(tmp_path_factory.mktemp('dec') / 'ckpt', variables,
                               checkpoint.model_meta(models.ARCHS['xs'], 14))


@pytest.fixture(scope='module')
def files(ckpt, tmp_path_factory):
  """Variant A and B files for 256x384 inputs (the test-path shape of 103319), through the CLI."""
  out = {}
  for variant, flags in (('A', []), ('B', ['--with-decoder'])):
    out[variant] = tmp_path_factory.mktemp('dec') / f'xs_{variant}.tflite'
    assert cli.main([f'--ckpt={ckpt}', '--input-shape=256x384', f'--out={out[variant]}', '--no-verify',
                     *flags]) == 0
  return out


@pytest.fixture(scope='module')
def exported(ckpt, files):
  fn = graphs.network_decoder_fn(checkpoint.load_model(ckpt, depthwise_impl='xla'))
  return fn, files['B'].read_bytes()


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


def test_tflite_predictor_gives_the_people_of_the_jax_predictor(ckpt, files, data_dir, reference_dir):
  """Whole test path on the sample image (640x480 → 256x384) with each file, against our JAX Predictor
  and the authors' final people."""
  import cv2  # pylint: disable=g-import-not-at-top
  from litepose_jax import inference  # pylint: disable=g-import-not-at-top
  z = np.load(reference_dir / 'inference_xs_crowdpose_sample.npz')
  image = cv2.cvtColor(cv2.imread(str(data_dir / 'crowdpose_sample' / '103319.jpg')), cv2.COLOR_BGR2RGB)
  loaded = checkpoint.load_model(ckpt)
  jax_people = inference.Predictor(loaded.model, loaded.variables, loaded.keypoint_set, 256).predict([image])[0]
  want = z['103319/final_preds'][:, :, :3]  # [30, K, 3] in image pixels
  jax_err = np.abs(jax_people.keypoints - want).max(-1)
  print(f'JAX: joints equal to the authors\' (1e-3 px): {np.mean(jax_err <= 1e-3):.4f}')
  for variant, path in files.items():
    p = predictor.TFLitePredictor(path)
    assert p.variant == ('network' if variant == 'A' else 'network+decoder')
    got = p.predict([image])[0]
    assert got.keypoints.shape == want.shape, variant
    assert np.abs(got.scores - z['103319/scores']).max() <= 1e-5, variant
    # Same people, same scores. With these random weights the maps are noise-like and the quarter-pixel
    # adjust flips on float-level map differences (TFLite vs XLA: ~2e-7; see the fixture's description):
    # a joint may move by one adjust step, 0.5 input px = 0.94 image px here.
    assert np.abs(got.scores - jax_people.scores).max() <= 1e-5, variant
    for name, ref in (('JAX', jax_people.keypoints), ('authors', want)):
      err = np.abs(got.keypoints - ref).max(-1)  # [30, K]
      print(f'variant {variant} vs {name}: joints equal (1e-3 px) {np.mean(err <= 1e-3):.4f}, '
            f'max diff {err.max():.3g} px')
      assert np.mean(err <= 1e-3) >= 0.99 and err.max() <= 1.0, (variant, name)
