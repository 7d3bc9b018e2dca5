"""TFLite export: CLI → file → LiteRT interpreter, against the JAX model and the authors' PyTorch outputs.

Weights: the authors' XS reference weights (random init + randomised BN), converted. Inputs: the two
CrowdPose sample images exactly as the authors' test path feeds them (resize_align_multi_scale: short
side 256, long side padded to a multiple of 64 → 256×384 and 256×448), stored in the reference fixture
inference_xs_crowdpose_sample.npz together with the PyTorch outputs (an independent oracle).
Conversion is slow, so each file is converted once per module: fp32 through the CLI at 256×384, fp16 and
int8 through the library at 128×128 (run at the sample shapes by resizing with XNNPACK).
"""

import jax
import numpy as np
import pytest

from litepose_jax import checkpoint, convert, models
from litepose_jax.export import __main__ as cli
from litepose_jax.export import calibration, graphs, onnx, runner, tflite

SAMPLES = ('103319', '106848')
FP32_SHAPE = (256, 384)  # the test-path shape of 103319 (640x480)


@pytest.fixture(scope='module')
def sample(reference_dir):
  """Per image: the flip-test batch [image, mirrored image] and the authors' PyTorch outputs for it."""
  z = np.load(reference_dir / 'inference_xs_crowdpose_sample.npz')
  nhwc = lambda a: a.transpose(0, 2, 3, 1)
  out = {}
  for i in SAMPLES:
    image = nhwc(z[f'{i}/input'])
    out[i] = dict(
        x=np.concatenate([image, image[:, :, ::-1]], 0),
        torch={'out_quarter': np.concatenate([nhwc(z[f'{i}/out_orig_0']), nhwc(z[f'{i}/out_flipinput_0'])]),
               'out_half': np.concatenate([nhwc(z[f'{i}/out_orig_1']), nhwc(z[f'{i}/out_flipinput_1'])])})
  return out


@pytest.fixture(scope='module')
def ckpt(reference_dir, tmp_path_factory):
  variables = convert.torch_to_flax(
      convert.load_state_dict(reference_dir / 'litepose_xs_reference.npz'), 'xs', 14)
  path = tmp_path_factory.mktemp('export') / 'xs_ckpt'
  checkpoint.save_model(path, variables, checkpoint.model_meta(models.ARCHS['xs'], 14))
  return path


@pytest.fixture(scope='module')
def loaded(ckpt):
  return checkpoint.load_model(ckpt, depthwise_impl='xla')


@pytest.fixture(scope='module')
def fp32_file(ckpt, tmp_path_factory):
  out = tmp_path_factory.mktemp('export') / 'xs_fp32.tflite'
  rc = cli.main([f'--ckpt={ckpt}', '--format=tflite', '--quantize=none',
                 f'--input-shape={FP32_SHAPE[0]}x{FP32_SHAPE[1]}', f'--out={out}', '--no-verify'])
  assert rc == 0 and out.is_file()
  return out


@pytest.fixture(scope='module')
def quantized(loaded, data_dir):
  fn = graphs.network_fn(loaded)
  files = calibration.find_images(data_dir / 'coco_mini' / 'val2017', limit=8)
  rep = list(calibration.representative_inputs(files, 128, 128))
  return {q: tflite.to_tflite(fn, (1, 128, 128, 3), q, rep if q == 'int8' else None)
          for q in ('fp16', 'int8')}


def test_fp32_op_set_is_builtin_only(fp32_file):
  data = fp32_file.read_bytes()
  counts = tflite.op_counts(data)
  print('fp32 XS ops:', counts)
  names = tflite.op_names(data)
  assert names and all(':' not in n and not n.startswith(('CUSTOM', 'UNKNOWN', 'FLEX')) for n in names), names
  # The native depthwise conv (depthwise_impl='xla') must reach the runtime's own kernel, one op per
  # depthwise layer: the stem's, one per inverted-residual block, one per final SepConv (4).
  arch = models.ARCHS['xs']
  n_dw = 1 + sum(len(s.blocks) for s in arch.stages) + 4
  assert counts.get('DEPTHWISE_CONV_2D') == n_dw, counts


def test_fp32_matches_pytorch_on_sample_images(fp32_file, sample):
  """Both samples, image and mirror (the test path's two passes), against the authors' PyTorch outputs."""
  net = runner.TFLiteModel(fp32_file, num_threads=2)
  assert net.exported_shape == (1, *FP32_SHAPE, 3)
  for i in SAMPLES:
    x, want = sample[i]['x'], sample[i]['torch']
    got = net(x)  # batch 2, and 106848 is 256x448: resized at run time (XNNPACK)
    for name in graphs.NETWORK_OUTPUTS:
      diff = float(np.abs(got[name] - want[name]).max())
      print(f'{i} {name} {x.shape}: fp32 TFLite vs PyTorch max|diff| {diff:.3g}')
      assert got[name].shape == want[name].shape and diff <= 1e-4, (i, name, diff)


def test_fp32_matches_jax(fp32_file, ckpt, sample):
  """Against our JAX model itself (default CPU depthwise form: same math, other formulation)."""
  x = sample['103319']['x']
  want = jax.jit(graphs.network_fn(checkpoint.load_model(ckpt)))(x)
  got = runner.TFLiteModel(fp32_file)(x)
  for name in graphs.NETWORK_OUTPUTS:
    diff = float(np.abs(got[name] - np.asarray(want[name])).max())
    print(f'103319 {name}: fp32 TFLite vs JAX max|diff| {diff:.3g}')
    assert diff <= 1e-4, (name, diff)


def test_fp32_builtin_kernels_without_xnnpack(fp32_file, sample):
  """What a runtime without the XNNPACK delegate runs (LiteRT's own kernels), at the exported shape."""
  net = runner.TFLiteModel(fp32_file, xnnpack=False)
  got = net(sample['103319']['x'][:1])
  for name in graphs.NETWORK_OUTPUTS:
    assert np.abs(got[name] - sample['103319']['torch'][name][:1]).max() <= 1e-4, name


def _stats(got, want):
  d = np.abs(got - want)
  corr = np.corrcoef(got.ravel(), want.ravel())[0, 1]
  return float(d.max()), float(d.mean()), float(corr)


def test_fp16_and_int8_stay_close_to_the_float_model(quantized, sample):
  sizes = {q: len(b) for q, b in quantized.items()}
  for q, data in quantized.items():
    names = tflite.op_names(data)
    assert all(':' not in n for n in names), (q, names)
    net = runner.TFLiteModel(data)
    for i in SAMPLES:
      x, want = sample[i]['x'], sample[i]['torch']
      got = net(x)
      for name in graphs.NETWORK_OUTPUTS:
        mx, mean, corr = _stats(got[name], want[name])
        scale = float(np.abs(want[name]).max())
        print(f'{q} {i} {name}: max|diff| {mx:.3g} mean|diff| {mean:.3g} corr {corr:.5f} (|out| <= {scale:.3g})')
        if q == 'fp16':  # fp16 weights, fp32 compute: weight rounding only (2^-11 relative)
          assert mx <= 2e-3 and corr >= 0.9999, (q, i, name, mx, corr)
        else:  # int8 weights and activations
          assert mx <= 0.1 * scale and corr >= 0.98, (q, i, name, mx, corr)
  # Both store smaller weights than fp32 (6.7 MB for XS): fp16 halves them, int8 quarters them.
  assert sizes['int8'] < sizes['fp16'] < 4.0e6, sizes


def test_int8_file_is_fully_integer(quantized):
  """Every conv / matmul kernel of the int8 file takes int8 weights (float only at the file's I/O)."""
  from ai_edge_litert import schema_py_generated as schema  # pylint: disable=g-import-not-at-top
  data = quantized['int8']
  m = schema.Model.GetRootAs(data, 0)
  sg = m.Subgraphs(0)
  names = tflite.op_names(data)
  weight_types = set()
  for i in range(sg.OperatorsLength()):
    op = sg.Operators(i)
    if names[op.OpcodeIndex()] in ('CONV_2D', 'DEPTHWISE_CONV_2D', 'FULLY_CONNECTED', 'TRANSPOSE_CONV'):
      w = op.Inputs(2 if names[op.OpcodeIndex()] == 'TRANSPOSE_CONV' else 1)
      weight_types.add(sg.Tensors(w).Type())
  assert weight_types == {schema.TensorType.INT8}, weight_types
  assert sg.Tensors(sg.Inputs(0)).Type() == schema.TensorType.FLOAT32


def test_cli_errors_are_one_line(ckpt, tmp_path, capsys):
  assert cli.main([f'--ckpt={tmp_path / "missing"}', f'--out={tmp_path / "a.tflite"}']) == 1
  assert 'does not exist' in capsys.readouterr().err
  assert cli.main([f'--ckpt={ckpt}', '--quantize=int8', f'--out={tmp_path / "a.tflite"}']) == 1
  assert '--calibration' in capsys.readouterr().err
  assert cli.main([f'--ckpt={ckpt}', '--input-shape=250x256', f'--out={tmp_path / "a.tflite"}']) == 1
  assert 'multiple of 16' in capsys.readouterr().err


def test_runner_rejects_bad_files(tmp_path):
  bad = tmp_path / 'bad.tflite'
  bad.write_bytes(b'not a flatbuffer')
  with pytest.raises(ValueError, match='bad.tflite'):
    runner.TFLiteModel(bad)
  with pytest.raises(FileNotFoundError):
    runner.TFLiteModel(tmp_path / 'missing.tflite')


def test_onnx_without_the_extra_is_a_clear_error(ckpt, tmp_path, capsys):
  if onnx.available():
    pytest.skip('jax2onnx installed here: the ONNX export itself is tested in test_export_onnx.py')
  assert cli.main([f'--ckpt={ckpt}', '--format=onnx', f'--out={tmp_path / "a.onnx"}']) == 1
  assert 'requirements-onnx.txt' in capsys.readouterr().err
