"""Optional ONNX export (jax2onnx + onnxruntime, requirements-onnx.txt): skipped where they are absent.

Run in an environment with the extra: `pip install -r requirements.txt -r requirements-onnx.txt`.
The same oracle as the TFLite tests: XS reference weights on the authors' preprocessed sample image,
compared with our JAX model and with the authors' PyTorch outputs.
"""

import numpy as np
import pytest

from litepose_jax import checkpoint, convert, models
from litepose_jax.export import __main__ as cli
from litepose_jax.export import graphs, onnx

pytest.importorskip('jax2onnx', reason='ONNX extra not installed (requirements-onnx.txt)')
ort = pytest.importorskip('onnxruntime', reason='ONNX extra not installed (requirements-onnx.txt)')


def test_onnx_network_matches_jax_and_pytorch(reference_dir, tmp_path):
  z = np.load(reference_dir / 'inference_xs_crowdpose_sample.npz')
  image = z['103319/input'].transpose(0, 2, 3, 1)  # [1, 256, 384, 3]
  x = np.concatenate([image, image[:, :, ::-1]], 0)  # batch 2: the file's batch is dynamic
  variables = convert.torch_to_flax(
      convert.load_state_dict(reference_dir / 'litepose_xs_reference.npz'), 'xs', 14)
  ckpt = checkpoint.save_model(tmp_path / 'ckpt', variables, checkpoint.model_meta(models.ARCHS['xs'], 14))
  out = tmp_path / 'xs.onnx'
  assert cli.main([f'--ckpt={ckpt}', '--format=onnx', '--input-shape=256x384', f'--out={out}']) == 0
  session = ort.InferenceSession(str(out), providers=['CPUExecutionProvider'])
  assert [i.name for i in session.get_inputs()] == ['images']
  got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {'images': x})))
  want = graphs.network_fn(checkpoint.load_model(ckpt, depthwise_impl='xla'))(x)
  for name in graphs.NETWORK_OUTPUTS:
    assert np.abs(got[name] - np.asarray(want[name])).max() <= 1e-4, name
  assert np.abs(got['out_quarter'][:1] - z['103319/out_orig_0'].transpose(0, 2, 3, 1)).max() <= 1e-4
  assert np.abs(got['out_half'][:1] - z['103319/out_orig_1'].transpose(0, 2, 3, 1)).max() <= 1e-4

