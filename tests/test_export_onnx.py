"""ONNX export (written from the Flax variables, litepose_jax/export/onnx.py) run with ONNX Runtime.

Oracles: our JAX model (its CPU form, shifted multiply-adds: independent of the ONNX graph's Conv /
ConvTranspose nodes and folded BatchNorm) and the authors' PyTorch outputs on their preprocessed sample
image, with the XS reference weights (random init + randomised BatchNorm statistics).
"""

import collections

import jax
import numpy as np
import onnx as onnx_lib
import onnxruntime as ort
import pytest

from litepose_jax import checkpoint, convert, models
from litepose_jax.export import __main__ as cli
from litepose_jax.export import onnx


def _run(path, x):
  session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
  return dict(zip([o.name for o in session.get_outputs()], session.run(None, {session.get_inputs()[0].name: x})))


def test_onnx_network_matches_jax_and_pytorch(reference_dir, tmp_path, capsys):
  z = np.load(reference_dir / 'inference_xs_crowdpose_sample.npz')
  image = z['103319/input'].transpose(0, 2, 3, 1)  # [1, 256, 384, 3]
  x = np.concatenate([image, image[:, :, ::-1]], 0)  # batch 2: the file's batch is symbolic
  variables = convert.torch_to_flax(
      convert.load_state_dict(reference_dir / 'litepose_xs_reference.npz'), 'xs', 14)
  ckpt = checkpoint.save_model(tmp_path / 'ckpt', variables, checkpoint.model_meta(models.ARCHS['xs'], 14))
  out = tmp_path / 'xs.onnx'
  assert cli.main([f'--ckpt={ckpt}', '--format=onnx', '--input_shape=256x384', f'--out={out}']) == 0
  printed = capsys.readouterr().out.split('ONNX Runtime vs JAX on a random input, max |diff|: ')[1]
  diffs = dict(item.split() for item in printed.splitlines()[0].split(', '))
  assert sorted(diffs) == sorted(onnx.OUTPUTS) and max(float(v) for v in diffs.values()) <= 1e-5, diffs
  session = ort.InferenceSession(str(out), providers=['CPUExecutionProvider'])
  assert [i.name for i in session.get_inputs()] == ['images']
  got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {'images': x})))
  assert got['out_quarter'].shape == (2, 64, 96, 28) and got['out_half'].shape == (2, 128, 192, 14)
  for j, name in enumerate(onnx.OUTPUTS):  # the image and its mirror against the authors' PyTorch
    assert np.abs(got[name][:1] - z[f'103319/out_orig_{j}'].transpose(0, 2, 3, 1)).max() <= 1e-4, name
    assert np.abs(got[name][1:] - z[f'103319/out_flipinput_{j}'].transpose(0, 2, 3, 1)).max() <= 1e-4, name
  meta = {p.key: p.value for p in onnx_lib.load(str(out)).metadata_props}
  assert '"input_shape": [1, 256, 384, 3]' in meta['litepose']


# Small enough to compile in seconds, with what the walk must get right: residual and non-residual
# blocks, kernel sizes 7/5/3, expansions 6/3, every stage and deconv width different.
SMALL_ARCH = {
    'img_size': 64, 'input_channel': 16, 'deconv_setting': [24, 16, 8],
    'backbone_setting': [
        {'num_blocks': 2, 'stride': 2, 'channel': 16, 'block_setting': [[6, 7], [3, 5]]},
        {'num_blocks': 2, 'stride': 2, 'channel': 24, 'block_setting': [[6, 7], [6, 3]]},
        {'num_blocks': 1, 'stride': 2, 'channel': 32, 'block_setting': [[6, 7]]},
        {'num_blocks': 2, 'stride': 1, 'channel': 40, 'block_setting': [[3, 7], [6, 5]]},
    ],
}


@pytest.fixture(scope='module')
def small():
  """(model, variables with BatchNorm statistics away from identity, input [3,64,96,3], JAX outputs)."""
  model = models.create(SMALL_ARCH, 17)
  shapes = jax.eval_shape(lambda: models.init_variables(model, jax.random.PRNGKey(0), 64))
  rng = np.random.default_rng(0)

  def fill(path, v):  # numpy draws: the jitted init takes a minute to compile on a busy 2-core machine
    name, shape = path[-1].key, v.shape
    if name == 'kernel':  # ~ PyTorch's init scale: 1/sqrt(fan-in), depthwise [k,k,C] fan-in k*k
      fan_in = np.prod(shape[:-1]) if len(shape) == 4 else shape[0] * shape[1]
      return (rng.uniform(-1, 1, shape) / np.sqrt(fan_in)).astype(np.float32)
    if name in ('scale', 'var'):  # BatchNorm statistics away from identity
      return rng.uniform(0.5, 2.0, shape).astype(np.float32)
    return rng.normal(0, 0.2, shape).astype(np.float32)  # bias, mean

  variables = jax.tree_util.tree_map_with_path(fill, shapes)
  x = rng.standard_normal((3, 64, 96, 3)).astype(np.float32)
  want = [np.asarray(w) for w in jax.jit(lambda im: model.apply(variables, im, train=False))(x)]
  return model, variables, x, want


@pytest.mark.parametrize('layout,deconv', [('nhwc', 'subpixel'), ('nchw', 'convtranspose')])
def test_onnx_graph_is_the_runtime_form_and_matches_jax(small, layout, deconv, tmp_path):
  model, variables, x, want = small
  path = onnx.write_network(model, variables, (1, 64, 96, 3), tmp_path / 'small.onnx', layout=layout,
                            deconv=deconv)
  ops = collections.Counter(n.op_type for n in onnx_lib.load(str(path)).graph.node)
  # One Conv per conv layer (BN folded, 7x7 depthwise in one node), no layout shuffles inside.
  n_blocks = sum(len(s.blocks) for s in model.arch.stages)
  subpixel = deconv == 'subpixel'
  assert ops['Conv'] == 3 + 3 * n_blocks + 8 + (6 if subpixel else 0)
  assert ops['ConvTranspose'] == (0 if subpixel else 6) and ops['DepthToSpace'] == (3 if subpixel else 0)
  assert ops['BatchNormalization'] == 0
  assert ops['Transpose'] == (3 if layout == 'nhwc' else 0)
  got = _run(path, x if layout == 'nhwc' else np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
  for name, w in zip(onnx.OUTPUTS, want):
    g = got[name] if layout == 'nhwc' else got[name].transpose(0, 2, 3, 1)
    assert g.shape == w.shape, name
    assert np.abs(g - w).max() <= 1e-5 * max(1.0, np.abs(w).max()), name
