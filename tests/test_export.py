"""TFLite export: CLI → file → LiteRT interpreter, against the JAX model and the authors' PyTorch outputs.

Weights: the authors' XS reference weights (random init + randomised BN), converted. Inputs: the two
CrowdPose sample images exactly as the authors' test path feeds them (resize_align_multi_scale: short
side 256, long side padded to a multiple of 64 → 256×384 and 256×448), stored in the reference fixture
inference_xs_crowdpose_sample.npz together with the PyTorch outputs (an independent oracle).
Conversion is slow, so each file is converted once per module, at the shape it is run at: fp32 through
the CLI at batch 2 × 256×384 (103319 and its mirror) and through the library at 2 × 256×448 (106848);
fp16 and int8 at 1 × 256×384. (Running a file at another shape is tested on a small conv graph only: it
depends on the network's formulation, see docs/export.md.)
"""

import jax
import numpy as np
import pytest

from litepose_jax import checkpoint, convert, models
from litepose_jax.export import __main__ as cli
from litepose_jax.export import calibration, graphs, runner, tflite

SAMPLES = ('103319', '106848')
SHAPES = {'103319': (256, 384), '106848': (256, 448)}  # their test-path shapes (640x480, 640x425)


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
def fp32_files(ckpt, loaded, tmp_path_factory):
  """{image id: fp32 file at batch 2 and that image's shape}; the first through the CLI."""
  out = tmp_path_factory.mktemp('export') / 'xs_fp32.tflite'
  h, w = SHAPES['103319']
  rc = cli.main([f'--ckpt={ckpt}', '--format=tflite', '--quantize=none', f'--input_shape={h}x{w}',
                 '--batch=2', f'--out={out}', '--noverify'])
  assert rc == 0 and out.is_file()
  other = out.with_name('xs_fp32_448.tflite')
  other.write_bytes(tflite.to_tflite(graphs.network_fn(loaded), (2, *SHAPES['106848'], 3)))
  return {'103319': out, '106848': other}


@pytest.fixture(scope='module')
def quantized(loaded, data_dir):
  fn = graphs.network_fn(loaded)
  h, w = SHAPES['103319']
  files = calibration.find_images(data_dir / 'coco_mini' / 'train2017', limit=8)
  rep = list(calibration.representative_inputs(files, h, w))
  return {q: tflite.to_tflite(fn, (1, h, w, 3), q, rep if q == 'int8' else None)
          for q in ('fp16', 'int8')}


def test_fp32_op_set_is_builtin_only(fp32_files):
  data = fp32_files['103319'].read_bytes()
  counts = tflite.op_counts(data)
  print('fp32 XS ops:', counts)
  names = tflite.op_names(data)
  assert names and all(':' not in n and not n.startswith(('CUSTOM', 'UNKNOWN', 'FLEX')) for n in names), names
  # The native depthwise convs must reach the runtime's own kernel. The CLI's default layout (XNNPACK)
  # cuts each 7x7 kernel into 3 pieces of <= 25 taps; the stem's 3x3 and the four final SepConvs' 5x5
  # stay one op each, and the 1x1 convs are CONV_2D (no FULLY_CONNECTED).
  arch = models.ARCHS['xs']
  n_blocks = sum(len(s.blocks) for s in arch.stages)
  assert counts.get('DEPTHWISE_CONV_2D') == 1 + 3 * n_blocks + 4, counts
  assert 'FULLY_CONNECTED' not in counts, counts
  # The 'builtin' layout (depthwise_impl='xla', written by the library here): one op per depthwise layer.
  builtin = tflite.op_counts(fp32_files['106848'].read_bytes())
  assert builtin.get('DEPTHWISE_CONV_2D') == 1 + n_blocks + 4, builtin


def test_cli_file_describes_itself(fp32_files):
  """The CLI stores what a runner needs (keypoint set, test-path input size, variant) in the file."""
  meta = runner.TFLiteModel(fp32_files['103319']).metadata
  assert meta is not None
  assert (meta['keypoints'], meta['num_keypoints'], meta['input_size']) == ('crowdpose', 14, 256)
  assert (meta['variant'], meta['input_shape'], meta['quantize']) == ('network', [2, 256, 384, 3], 'none')
  assert runner.TFLiteModel(fp32_files['106848']).metadata is None  # written by the library, no metadata


def test_fp32_matches_pytorch_on_sample_images(fp32_files, sample):
  """Both samples, image and mirror (the test path's two passes), against the authors' PyTorch outputs."""
  for i in SAMPLES:
    net = runner.TFLiteModel(fp32_files[i], num_threads=2)
    assert net.exported_shape == (2, *SHAPES[i], 3)
    x, want = sample[i]['x'], sample[i]['torch']
    got = net(x)
    for name in graphs.NETWORK_OUTPUTS:
      diff = float(np.abs(got[name] - want[name]).max())
      print(f'{i} {name} {x.shape}: fp32 TFLite vs PyTorch max|diff| {diff:.3g}')
      assert got[name].shape == want[name].shape and diff <= 1e-4, (i, name, diff)


def test_fp32_matches_jax(fp32_files, ckpt, sample):
  """Against our JAX model itself (default CPU depthwise form: same math, other formulation)."""
  x = sample['103319']['x']
  want = jax.jit(graphs.network_fn(checkpoint.load_model(ckpt)))(x)
  got = runner.TFLiteModel(fp32_files['103319'])(x)
  for name in graphs.NETWORK_OUTPUTS:
    diff = float(np.abs(got[name] - np.asarray(want[name])).max())
    print(f'103319 {name}: fp32 TFLite vs JAX max|diff| {diff:.3g}')
    assert diff <= 1e-4, (name, diff)


def test_window_head_file_matches_pytorch_at_each_signature(ckpt, sample, tmp_path):
  """--deconv=window: the head's transposed convs as 2x2 convs + depth-to-space (no TRANSPOSE_CONV), one
  signature per input shape; each sample image runs on its own shape's signature and matches the
  authors' PyTorch outputs."""
  out = tmp_path / 'xs_window.tflite'
  shapes = ','.join(f'{h}x{w}' for h, w in SHAPES.values())
  rc = cli.main([f'--ckpt={ckpt}', '--deconv=window', f'--input_shape={shapes}', '--batch=2', f'--out={out}',
                 '--noverify'])
  assert rc == 0
  data = out.read_bytes()
  assert 'TRANSPOSE_CONV' not in tflite.op_counts(data)
  net = runner.TFLiteModel(out)
  assert net.metadata['deconv'] == 'window'
  assert sorted(net.shapes) == sorted((2, h, w, 3) for h, w in SHAPES.values())
  for i in SAMPLES:
    got = net(sample[i]['x'])
    for name in graphs.NETWORK_OUTPUTS:
      diff = float(np.abs(got[name] - sample[i]['torch'][name]).max())
      assert diff <= 1e-4, (i, name, diff)


def test_fp32_builtin_kernels_without_xnnpack(fp32_files, sample):
  """What a runtime without the XNNPACK delegate runs (LiteRT's own kernels)."""
  net = runner.TFLiteModel(fp32_files['106848'], xnnpack=False)
  got = net(sample['106848']['x'])
  for name in graphs.NETWORK_OUTPUTS:
    assert np.abs(got[name] - sample['106848']['torch'][name]).max() <= 1e-4, name


def test_runner_resizes_a_static_file_with_xnnpack():
  """A file exported for one shape runs another batch / size (resize_tensor_input) when every op derives
  its output shape from its input: a conv + depthwise-conv graph, against JAX."""
  rng = np.random.RandomState(0)
  w1 = rng.standard_normal((3, 3, 3, 8)).astype(np.float32)
  w2 = rng.standard_normal((7, 7, 1, 8)).astype(np.float32)
  dims = ('NHWC', 'HWIO', 'NHWC')

  def fn(x):
    y = jax.lax.conv_general_dilated(x, w1, (2, 2), ((1, 1), (1, 1)), dimension_numbers=dims)
    y = jax.lax.conv_general_dilated(jax.nn.relu6(y), w2, (1, 1), ((3, 3), (3, 3)), dimension_numbers=dims,
                                     feature_group_count=8)
    return {'y': y}

  net = runner.TFLiteModel(tflite.to_tflite(fn, (1, 32, 32, 3)))
  for shape in ((1, 32, 32, 3), (2, 64, 96, 3), (1, 32, 32, 3)):
    x = rng.standard_normal(shape).astype(np.float32)
    got = net(x)['y']
    assert got.shape == (shape[0], shape[1] // 2, shape[2] // 2, 8)
    assert np.abs(got - np.asarray(fn(x)['y'])).max() <= 1e-4 * np.abs(got).max()


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
    x, want = sample['103319']['x'], sample['103319']['torch']
    for i, sl in (('103319', slice(0, 1)), ('103319 mirrored', slice(1, 2))):
      got = net(x[sl])
      for name in graphs.NETWORK_OUTPUTS:
        mx, mean, corr = _stats(got[name], want[name][sl])
        scale = float(np.abs(want[name]).max())
        print(f'{q} {i} {name}: max|diff| {mx:.3g} mean|diff| {mean:.3g} corr {corr:.5f} (|out| <= {scale:.3g})')
        if q == 'fp16':  # fp16 weights, fp32 compute: weight rounding only (2^-11 relative)
          assert mx <= 2e-3 and corr >= 0.9999, (q, i, name, mx, corr)
        else:  # int8 weights and activations
          assert mx <= 0.1 * scale and corr >= 0.98, (q, i, name, mx, corr)
  # Both store smaller weights than fp32 (6.7 MB for XS): fp16 halves them, int8 about quarters them.
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
  assert cli.main([f'--ckpt={ckpt}', '--input_shape=250x256', f'--out={tmp_path / "a.tflite"}']) == 1
  assert 'multiple of 16' in capsys.readouterr().err
  # A malformed flag value: one line, exit 2; the dashed spelling of earlier releases is read with a note.
  assert cli.main([f'--ckpt={ckpt}', '--input-shape=256by256', f'--out={tmp_path / "a.tflite"}']) == 2
  err = capsys.readouterr().err
  assert 'note: --input-shape is now --input_shape' in err
  assert err.splitlines()[-1] == ("error: --input_shape must look like 256x384 (or a list 256x256,256x384), "
                                  "got '256by256'")


def test_runner_rejects_bad_files(tmp_path):
  bad = tmp_path / 'bad.tflite'
  bad.write_bytes(b'not a flatbuffer')
  with pytest.raises(ValueError, match='bad.tflite'):
    runner.TFLiteModel(bad)
  with pytest.raises(FileNotFoundError):
    runner.TFLiteModel(tmp_path / 'missing.tflite')


def test_onnx_cli_rejects_what_it_cannot_write(ckpt, tmp_path, capsys):
  assert cli.main([f'--ckpt={ckpt}', '--format=onnx', '--with_decoder', f'--out={tmp_path / "a.onnx"}']) == 1
  assert 'network alone' in capsys.readouterr().err
  assert cli.main([f'--ckpt={ckpt}', '--format=onnx', '--quantize=fp16', f'--out={tmp_path / "a.onnx"}']) == 1
  assert 'tflite only' in capsys.readouterr().err