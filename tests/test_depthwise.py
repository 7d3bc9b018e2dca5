"""The CPU depthwise convolution ('shift', custom VJP) against XLA's native grouped convolution.

The oracle is `lax.conv_general_dilated` with feature_group_count = C and PyTorch's symmetric padding,
called here directly, so a bug in `depthwise.py` cannot hide in the oracle. Forward and both gradients
are compared for kernels 3/5/7, strides 1/2, odd and even sizes; bf16 runs; and the full model (a small
architecture, every layer type) gives the same outputs and gradients with 'xla' and 'shift' (the switch
also selects the 1x1-conv VJP and the transposed-conv form; both deconv forms are checked against a NumPy
formula in test_model.py). The export form 'tflite' (native convs of ≤ 25 taps, 1x1 convs as
convolutions, BatchNorm folded into the depthwise pieces) gives the same forward as the oracle and, for
the full model, as 'xla'. The C++ kernel 'ffi' (cpu_kernels.py; bias and ReLU6 inside) equals the oracle
for every kernel size, stride and channel tail, is differentiated exactly as 'shift', builds on this
machine, and without a compiler 'auto' falls back to 'shift'. The fused block kernel (expand 1x1 + BN +
ReLU6 + depthwise + BN + ReLU6 in one call) equals those layers written out, and the 'ffi' model uses it
for every block.
"""

import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from litepose_jax import models
from litepose_jax.models import cpu_kernels
from litepose_jax.models import depthwise

REPO = pathlib.Path(__file__).resolve().parents[1]


def _oracle(x, kernel, stride):
  k, c = kernel.shape[0], x.shape[-1]
  return lax.conv_general_dilated(x, kernel.reshape(k, k, 1, c), (stride, stride),
                                  ((k // 2, k // 2), (k // 2, k // 2)),
                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC'), feature_group_count=c,
                                  precision=lax.Precision.HIGHEST)


def _value_and_grads(fn, x, kernel, cotangent):
  y, vjp = jax.vjp(fn, x, kernel)
  return (y,) + vjp(cotangent)


def _assert_close(got, want, rtol, what, floor=1e-30):
  """max|got − want| ≤ rtol·max(max|want|, floor): relative to the tensor's scale, not per element."""
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  assert got.shape == want.shape, (what, got.shape, want.shape)
  err = np.abs(got - want).max() / max(np.abs(want).max(), floor)
  assert err <= rtol, f'{what}: max|diff|/max|want| = {err:.2e} > {rtol:.0e}'


# (batch, H, W, C): odd and even sizes, a non-square one, channels not a multiple of the vector width.
SHAPES = [(2, 9, 12, 5), (1, 16, 11, 20)]


@pytest.mark.parametrize('kernel_size', [3, 5, 7])
@pytest.mark.parametrize('stride', [1, 2])
def test_shift_equals_native_conv_forward_and_gradients(kernel_size, stride):
  rng = np.random.default_rng(kernel_size * 10 + stride)
  for shape in SHAPES:
    x = jnp.asarray(rng.normal(size=shape), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(kernel_size, kernel_size, shape[-1])), jnp.float32)
    out_shape = jax.eval_shape(lambda a, b: _oracle(a, b, stride), x, kernel).shape
    cot = jnp.asarray(rng.normal(size=out_shape), jnp.float32)
    want = _value_and_grads(lambda a, b: _oracle(a, b, stride), x, kernel, cot)
    fn = jax.jit(lambda a, b, c: _value_and_grads(lambda p, q: depthwise.depthwise_conv_shift(p, q, stride),
                                                  a, b, c))
    got = fn(x, kernel, cot)
    for name, g, w in zip(('output', 'd/dx', 'd/dkernel'), got, want):
      _assert_close(g, w, 2e-6, f'{name} k={kernel_size} s={stride} {shape}')


def test_shift_bfloat16_matches_float32_oracle():
  # bf16 inputs, float32 accumulation inside: the error is bf16 rounding of inputs and result only.
  rng = np.random.default_rng(0)
  x32 = jnp.asarray(rng.normal(size=(2, 10, 10, 24)), jnp.float32)
  k32 = jnp.asarray(rng.normal(size=(7, 7, 24)), jnp.float32)
  x, kernel = x32.astype(jnp.bfloat16), k32.astype(jnp.bfloat16)
  for stride in (1, 2):
    cot = jnp.asarray(rng.normal(size=_oracle(x32, k32, stride).shape), jnp.bfloat16)
    want = _value_and_grads(lambda a, b: _oracle(a, b, stride), x.astype(jnp.float32),
                            kernel.astype(jnp.float32), cot.astype(jnp.float32))
    got = jax.jit(lambda a, b, c: _value_and_grads(
        lambda p, q: depthwise.depthwise_conv_shift(p, q, stride), a, b, c))(x, kernel, cot)
    for name, g, w in zip(('output', 'd/dx', 'd/dkernel'), got, want):
      assert g.dtype == jnp.bfloat16, (name, g.dtype)
      _assert_close(g, w, 1e-2, f'bf16 {name} s={stride}')


def test_auto_picks_the_cpu_kernel_and_rejects_unknown_impl():
  assert jax.default_backend() == 'cpu'
  # This machine has a C++ compiler: the kernel must build (a failed build would silently cost speed).
  assert cpu_kernels.available()
  assert depthwise.resolve_impl('auto') == 'ffi' and depthwise.resolve_layer_impl('auto') == 'shift'
  assert depthwise.resolve_impl('xla') == 'xla'
  with pytest.raises(ValueError, match='depthwise impl'):
    depthwise.resolve_impl('fast')


@pytest.mark.parametrize('kernel_size', [3, 5, 7])
@pytest.mark.parametrize('stride', [1, 2])
def test_cpu_kernel_equals_native_conv_with_bias_and_relu6(kernel_size, stride):
  """'ffi' (C++ kernel) against the oracle + bias (+ ReLU6); its gradients are the 'shift' form's.

  Channels 37 = 16 + 16 + 4 + 1 and 5 = 4 + 1 run every vector width and the scalar tail; widths give
  output rows that are not a multiple of the 8-column tile."""
  rng = np.random.default_rng(kernel_size * 10 + stride + 100)
  for shape in SHAPES + [(2, 13, 21, 37), (1, 8, 40, 48)]:
    c = shape[-1]
    x = jnp.asarray(rng.normal(size=shape), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(kernel_size, kernel_size, c)), jnp.float32)
    bias = jnp.asarray(rng.normal(size=(c,)), jnp.float32)
    for relu6 in (False, True):
      want = _oracle(x, kernel, stride) + bias
      want = jax.nn.relu6(want) if relu6 else want
      got = jax.jit(lambda a, b, d: depthwise.depthwise_conv(a, b, stride, 'ffi', bias=d, relu6=relu6))(
          x, kernel, bias)
      _assert_close(got, want, 2e-6, f'ffi k={kernel_size} s={stride} {shape} relu6={relu6}')
  cot = jnp.asarray(rng.normal(size=got.shape), jnp.float32)
  grads = [jax.vjp(lambda a, b, d: depthwise.depthwise_conv(a, b, stride, impl, bias=d, relu6=True),
                   x, kernel, bias)[1](cot) for impl in ('ffi', 'shift')]
  for name, g, w in zip(('d/dx', 'd/dkernel', 'd/dbias'), *grads):
    np.testing.assert_array_equal(g, w, err_msg=name)


@pytest.mark.parametrize('kernel_size', [3, 5, 7])
@pytest.mark.parametrize('stride', [1, 2])
def test_fused_expand_depthwise_equals_the_layers_formula(kernel_size, stride):
  """cpu_kernels.expand_depthwise (one C++ call) against the spec's layers written here: expand 1x1 →
  eval BN → ReLU6 → the depthwise oracle → eval BN → ReLU6. E = 96 runs the 16-channel blocks, 40 the
  8-channel ones; odd sizes and widths that are not a multiple of the 8-column tile."""
  rng = np.random.default_rng(kernel_size * 10 + stride + 300)
  eps = 1e-5

  def bn(e):
    return tuple(jnp.asarray(a, jnp.float32) for a in (rng.uniform(0.5, 1.5, e), rng.normal(size=e),
                                                        rng.normal(scale=0.3, size=e), rng.uniform(0.5, 2, e)))

  def apply_bn(y, p):
    scale, bias, mean, var = (np.asarray(a, np.float64) for a in p)
    return (y - mean) / np.sqrt(var + eps) * scale + bias

  for b, h, w, cin, e in ((1, 16, 16, 16, 96), (2, 13, 11, 5, 40), (1, 9, 20, 24, 144)):
    x = jnp.asarray(rng.normal(size=(b, h, w, cin)), jnp.float32)
    we = jnp.asarray(rng.normal(size=(cin, e)) / np.sqrt(cin), jnp.float32)
    wd = jnp.asarray(rng.normal(size=(kernel_size, kernel_size, e)) / kernel_size, jnp.float32)
    ebn, dbn = bn(e), bn(e)
    hidden = np.clip(apply_bn(np.einsum('bhwc,ce->bhwe', np.asarray(x, np.float64), np.asarray(we, np.float64)),
                              ebn), 0, 6)
    conv = np.asarray(_oracle(jnp.asarray(hidden, jnp.float32), wd, stride), np.float64)
    want = np.clip(apply_bn(conv, dbn), 0, 6)
    got = jax.jit(lambda *a: cpu_kernels.expand_depthwise(*a, stride=stride, eps=eps))(x, we, ebn, wd, dbn)
    _assert_close(got, want, 2e-6, f'fused k={kernel_size} s={stride} {(b, h, w, cin, e)}')


def test_without_a_compiler_auto_keeps_the_shift_form(tmp_path):
  """No C++ compiler on PATH and an empty kernel folder: available() is False with one logged reason,
  'auto' is 'shift', and the model still runs."""
  code = ('import jax.numpy as jnp; from litepose_jax import models; '
          'from litepose_jax.models import cpu_kernels, depthwise; '
          'm = models.create("xs", 14); v = models.init_variables(m, __import__("jax").random.PRNGKey(0), 64); '
          'm.apply(v, jnp.zeros((1, 64, 64, 3)), train=False); '
          'print(cpu_kernels.available(), depthwise.resolve_impl("auto"))')
  env = dict(os.environ, PATH=str(tmp_path), LITEPOSE_JAX_KERNEL_DIR=str(tmp_path / 'kernels'),
             CUDA_VISIBLE_DEVICES='', TF_CPP_MIN_LOG_LEVEL='2')
  env.pop('CXX', None)
  out = subprocess.run([sys.executable, '-c', code], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.split() == ['False', 'shift'], out.stdout
  assert out.stderr.count('the C++ depthwise kernel is not available (no C++ compiler found') == 1
  assert not (tmp_path / 'kernels').exists() or not list((tmp_path / 'kernels').iterdir())


@pytest.mark.parametrize('kernel_size,pieces', [(3, 1), (5, 1), (7, 3), (9, 5)])
@pytest.mark.parametrize('stride', [1, 2])
def test_tflite_pieces_equal_native_conv(kernel_size, pieces, stride):
  """The export form: centred pieces of ≤ 25 taps, summed (7x7: the parity cut, 21 + 20 + 8 taps, so that
  XNNPACK runs one of the three on its 9-tap kernel; larger kernels: centred 5x5 + two pieces per ring)."""
  rng = np.random.default_rng(kernel_size * 10 + stride)
  for shape in SHAPES:
    x = jnp.asarray(rng.normal(size=shape), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(kernel_size, kernel_size, shape[-1])), jnp.float32)
    got = depthwise.depthwise_conv(x, kernel, stride, impl='tflite')
    _assert_close(got, _oracle(x, kernel, stride), 2e-6, f'pieces k={kernel_size} s={stride} {shape}')
    jaxpr = jax.make_jaxpr(lambda a, b: depthwise.depthwise_conv(a, b, stride, impl='tflite'))(x, kernel)
    convs = [e for e in jaxpr.eqns if e.primitive.name == 'conv_general_dilated']
    assert len(convs) == pieces, (kernel_size, len(convs))
    taps = sorted(int(np.prod(e.invars[1].aval.shape[:2])) for e in convs)
    assert taps[-1] <= 25, taps
    if kernel_size == 7:
      assert taps == [8, 20, 21], taps


# A LitePose with every layer type (stem, stride-2 and residual 7x7 blocks, a 5x5 block, the deconv head
# and SepConv outputs) but one or two blocks per stage, so that both implementations compile quickly.
SMALL_ARCH = {
    'img_size': 64, 'input_channel': 8, 'deconv_setting': [8, 8, 8],
    'backbone_setting': [
        {'num_blocks': 2, 'stride': 2, 'channel': 8, 'block_setting': [[6, 7], [6, 7]]},
        {'num_blocks': 1, 'stride': 2, 'channel': 16, 'block_setting': [[6, 5]]},
        {'num_blocks': 1, 'stride': 2, 'channel': 16, 'block_setting': [[3, 7]]},
        {'num_blocks': 1, 'stride': 1, 'channel': 24, 'block_setting': [[6, 7]]},
    ]}


def test_full_model_shift_equals_xla_forward_and_gradient():
  k = 3
  ref_model = models.create(SMALL_ARCH, k, depthwise_impl='xla')
  variables = models.init_variables(ref_model, jax.random.PRNGKey(0), 64, batch=2)
  rng = np.random.default_rng(1)
  images = jnp.asarray(rng.normal(size=(2, 64, 48, 3)), jnp.float32)
  t4 = jnp.asarray(rng.normal(size=(2, 16, 12, 2 * k)), jnp.float32)
  t2 = jnp.asarray(rng.normal(size=(2, 32, 24, k)), jnp.float32)

  def run(model, variables, images, t4, t2):
    def loss(params):
      (q, h), upd = model.apply({'params': params, 'batch_stats': variables['batch_stats']}, images,
                                train=True, mutable=['batch_stats'])
      return jnp.sum(q * t4) + jnp.sum(h * t2), upd['batch_stats']
    (value, stats), grads = jax.value_and_grad(loss, has_aux=True)(variables['params'])
    return value, stats, grads, model.apply(variables, images, train=False)

  args = (variables, images, t4, t2)  # arguments, not closed-over constants (XLA would fold them)
  want = jax.jit(lambda *a: run(ref_model, *a))(*args)
  # 'auto' is 'shift' on CPU (test above): one compile of the shift model covers both.
  shift_model = models.create(SMALL_ARCH, k, depthwise_impl='shift')
  got = jax.jit(lambda *a: run(shift_model, *a))(*args)
  _assert_close(got[0], want[0], 1e-5, 'train loss')
  for (path, g), w in zip(jax.tree_util.tree_leaves_with_path(got[1:]), jax.tree.leaves(want[1:])):
    # Gradients pass through train-mode BN and sums over every pixel: float32 summation-order noise
    # reaches ~3e-5 of a tensor's scale. floor 1: BN running means of zero-mean features are ~1e-9 (rounding noise) in both implementations.
    _assert_close(g, w, 1e-4, jax.tree_util.keystr(path), floor=1.0)


def test_full_model_tflite_and_ffi_forms_equal_xla_forward():
  k = 3
  ref_model = models.create(SMALL_ARCH, k, depthwise_impl='xla')
  variables = models.init_variables(ref_model, jax.random.PRNGKey(0), 64, batch=2)
  # Non-trivial BatchNorm parameters and statistics: 'tflite' folds them into the depthwise pieces.
  rng = np.random.default_rng(2)
  def perturb(path, v):
    leaf = path[-1].key
    if leaf == 'var':
      return jnp.asarray(rng.uniform(0.5, 2.0, v.shape), v.dtype)
    if leaf in ('mean', 'scale', 'bias'):
      return jnp.asarray(v + rng.normal(scale=0.3, size=v.shape), v.dtype)
    return v
  variables = jax.tree_util.tree_map_with_path(perturb, variables)
  images = jnp.asarray(rng.normal(size=(2, 64, 48, 3)), jnp.float32)
  want = ref_model.apply(variables, images, train=False)
  for impl in ('tflite', 'ffi'):   # both fold the BatchNorm into the depthwise conv
    model = models.create(SMALL_ARCH, k, depthwise_impl=impl)
    forward = jax.jit(lambda v, x: model.apply(v, x, train=False))   # pylint: disable=cell-var-from-loop
    if impl == 'ffi':   # every block's expand + depthwise runs as the one fused kernel call
      hlo = forward.lower(variables, images).as_text()
      assert hlo.count(cpu_kernels.FUSED_TARGET) == 5, hlo.count(cpu_kernels.FUSED_TARGET)
    got = forward(variables, images)
    for g, w, name in zip(got, want, ('out_quarter', 'out_half')):
      _assert_close(g, w, 1e-5, f'{impl} {name}')
