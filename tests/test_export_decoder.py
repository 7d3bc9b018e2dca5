"""Variant B (network + flip test + jitted decoder in one TFLite file) against JAX and the authors' people,
and the TFLite predictor (the test path around an exported file, `predict.py --model`) for both variants.

Oracle: the authors' test path on the CrowdPose sample 103319 (XS reference weights, input
256×384): `grouped` = their parse() output (x, y, val at input resolution after adjust + refine), stored
in inference_xs_crowdpose_sample.npz.
"""

import dataclasses

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
  """Variant A for 256x384 inputs (the test-path shape of 103319), variant B for 256x384 and 384x256 (one
  signature each), through the CLI; B with its self-check on."""
  out = {}
  for variant, flags in (('A', ['--input_shape=256x384', '--noverify']),
                         ('B', ['--input_shape=256x384,384x256', '--with_decoder'])):
    out[variant] = tmp_path_factory.mktemp('dec') / f'xs_{variant}.tflite'
    assert cli.main([f'--ckpt={ckpt}', f'--out={out[variant]}', *flags]) == 0
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


def _image_input(path, shape):
  import cv2  # pylint: disable=g-import-not-at-top
  from litepose_jax import inference  # pylint: disable=g-import-not-at-top
  x, _, _ = inference.resize_align(inference.read_rgb(path), 256)
  if x.shape[:2] != shape:  # e.g. the landscape photo through the portrait signature
    x = cv2.resize(x, (shape[1], shape[0]))
  return x[None]


@pytest.mark.parametrize('shape', [(256, 384), (384, 256)])
def test_decoder_file_any_input_two_shapes(ckpt, exported, data_dir, shape):
  """Zero, constant, random and real inputs through both signatures of one file: the JAX path's people.

  Before the fix the file failed on random and on 3 of these photos (`num_input_elements !=
  num_output_elements (900 != 30) ... RESHAPE ... IF ... WHILE`). The JAX side runs the file's depthwise
  form ('tflite', the default --kernels=xnnpack): on zero / constant images the maps are plateaus where
  float-level differences between forms move a joint by 200 px, JAX against JAX.
  """
  _, data = exported
  fn = graphs.network_decoder_fn(checkpoint.load_model(ckpt, depthwise_impl='tflite'))
  net = runner.TFLiteModel(data)
  assert set(net.shapes) == {(1, 256, 384, 3), (1, 384, 256, 3)}
  rs = np.random.RandomState(1)
  full = (1,) + shape + (3,)
  cases = {'zero': np.zeros(full), 'const': np.full(full, 1.0), 'random': rs.standard_normal(full),
           'uniform': rs.uniform(-2, 2, full)}
  for name in ('crowdpose_sample/103319.jpg', 'crowdpose_sample/106848.jpg',
               'coco_mini/val2017/000000109313.jpg', 'coco_mini/val2017/000000000139.jpg'):
    cases[name] = _image_input(data_dir / name, shape)
  jfn = jax.jit(fn)
  for name, x in cases.items():
    x = np.asarray(x, np.float32)
    got = net(x)
    want = {k: np.asarray(v) for k, v in jfn(x).items()}
    np.testing.assert_array_equal(got['valid'], want['valid'], err_msg=name)
    v = want['valid'][0].astype(bool)
    if name in ('zero', 'const'):
      # Plateau maps: the people match (count, above), a joint may sit on another pixel of the plateau
      # (224 px seen at 256x384 on zeros, file vs JAX in the same form: float rounding of near-flat maps,
      # not the top-k tie order; docs/export.md).
      continue
    assert np.abs(got['keypoints'][0][v] - want['keypoints'][0][v]).max(initial=0) <= 1e-3, name
    assert np.abs(got['scores'][0][v] - want['scores'][0][v]).max(initial=0) <= 1e-5, name


def test_decoder_graph_on_any_heatmap_content():
  """The decoder alone (maps in, people out) in TFLite: no peaks, one plateau, all pixels peaks, more than
  30 candidates per joint, blobs; people equal to the JAX decoder (real branches, the default config)."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from litepose_jax import decode  # pylint: disable=g-import-not-at-top
  k, h, w = 14, 32, 48
  cfg = decode.DecodeConfig.create('crowdpose')

  def split(x):
    return x[..., :k].transpose(0, 3, 1, 2), x[..., k:].reshape(1, h, w, k, 2).transpose(0, 3, 4, 1, 2)

  def fn(x):
    kp, sc, v = decode.parse_maps(*split(x), dataclasses.replace(cfg, branch_free=True))
    return {'keypoints': kp, 'scores': sc, 'valid': v.astype(jnp.int32)}

  net = runner.TFLiteModel(tflite.to_tflite(fn, (1, h, w, 3 * k)))
  want_fn = jax.jit(lambda x: decode.parse_maps(*split(x), cfg))
  rs = np.random.RandomState(0)
  yy, xx = np.mgrid[:h, :w]
  blobs = np.zeros((1, h, w, k))
  for i in range(60):
    cy, cx = rs.randint(0, h), rs.randint(0, w)
    blobs[0, ..., i % k] = np.maximum(blobs[0, ..., i % k], rs.uniform(.2, 1) * np.exp(
        -((yy - cy) ** 2 + (xx - cx) ** 2) / 4))
  # No float32 denormals: XLA:CPU flushes them to 0, LiteRT does not, and refine keeps a joint whose
  # value is > 0 (a 2e-41 Gaussian tail was filled by the file only).
  blobs[blobs < 1e-6] = 0
  grid = ((yy % 3 == 0) & (xx % 3 == 0))[None, ..., None] * 0.7  # 176 separate peaks per joint
  tags = rs.standard_normal((1, h, w, 2 * k))
  cases = {'no peaks': (np.zeros((1, h, w, k)), np.zeros_like(tags)),
           'plateau': (np.full((1, h, w, k), 0.5), np.zeros_like(tags)),
           'plateau, random tags': (np.full((1, h, w, k), 0.5), tags),
           'random': (rs.uniform(0, 1, (1, h, w, k)), 3 * tags),
           'blobs': (blobs, tags), '>30 peaks': (np.broadcast_to(grid, (1, h, w, k)), tags)}
  people = {}
  for name, (heat, tg) in cases.items():
    x = np.concatenate([heat, tg], -1).astype(np.float32)
    got = net(x)
    kp, sc, valid = (np.asarray(a) for a in want_fn(x))
    np.testing.assert_array_equal(got['valid'], valid.astype(np.int32), err_msg=name)
    np.testing.assert_allclose(got["keypoints"], kp, atol=1e-4, err_msg=name)
    np.testing.assert_allclose(got['scores'], sc, atol=1e-6, err_msg=name)
    people[name] = int(valid.sum())
  print(people)
  assert people['no peaks'] == 0 and people['>30 peaks'] == 30 and 0 < people['blobs'] < 30


def test_cli_leaves_no_file_when_the_self_check_fails(ckpt, tmp_path, monkeypatch, capsys):
  """A file that fails its check is not written (before: the broken file stayed on disk, exit 1)."""
  def broken(path):
    raise ValueError('simulated LiteRT failure')
  monkeypatch.setattr(runner, 'TFLiteModel', broken)
  out = tmp_path / 'b.tflite'
  assert cli.main([f'--ckpt={ckpt}', '--input_shape=256x256', '--with_decoder', f'--out={out}']) == 1
  assert 'error:' in capsys.readouterr().err
  assert not out.exists() and not list(tmp_path.iterdir())
