"""The CPU broadcast-sum forms of narrow convolutions equal XLA's native convolution and dot, values and
gradients (models/narrow_conv.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from litepose_jax.models import layers
from litepose_jax.models import narrow_conv


def _native(x, kernel, stride):
  pad = kernel.shape[0] // 2
  return lax.conv_general_dilated(x, kernel, (stride, stride), ((pad, pad), (pad, pad)),
                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def _loss(conv):
  # A non-linear read-out, so the gradients depend on every output value.
  def loss(x, k):
    y = conv(x, k)
    return jnp.sum(jnp.sin(y) * jnp.arange(1.0, 1.0 + y.shape[-1]))
  return loss


@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('hw', [(16, 24), (17, 13)])
def test_conv_broadcast_equals_native_conv(stride, hw):
  rng = np.random.default_rng(stride + hw[1])
  x = jnp.asarray(rng.normal(size=(2, *hw, 3)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(3, 3, 3, 8)), jnp.float32)
  ours = narrow_conv.conv_broadcast(x, kernel, stride)
  ref = _native(x, kernel, stride)
  assert ours.shape == ref.shape
  np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=1e-5)
  g_ours = jax.grad(_loss(lambda a, b: narrow_conv.conv_broadcast(a, b, stride)), (0, 1))(x, kernel)
  g_ref = jax.grad(_loss(lambda a, b: _native(a, b, stride)), (0, 1))(x, kernel)
  for a, b in zip(g_ours, g_ref):
    np.testing.assert_allclose(a, b, atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize('cin,cout', [(16, 96), (32, 16), (16, 14), (3, 5)])
def test_narrow_pointwise_conv_equals_dot(cin, cout):
  assert narrow_conv.use_broadcast_sum(cin, cout)  # these shapes take the broadcast-sum forward
  rng = np.random.default_rng(cin * cout)
  x = jnp.asarray(rng.normal(size=(2, 6, 7, cin)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(cin, cout)), jnp.float32)
  dot = lambda a, b: jnp.einsum('bhwc,cd->bhwd', a, b)
  np.testing.assert_allclose(layers.pointwise_conv(x, kernel), dot(x, kernel), atol=1e-5, rtol=1e-5)
  g_ours = jax.grad(_loss(layers.pointwise_conv), (0, 1))(x, kernel)
  g_ref = jax.grad(_loss(dot), (0, 1))(x, kernel)
  for a, b in zip(g_ours, g_ref):
    np.testing.assert_allclose(a, b, atol=2e-4, rtol=1e-4)


def test_broadcast_matmul_keeps_dtype():
  x = jnp.ones((2, 3, 4, 8), jnp.bfloat16)
  out = narrow_conv.broadcast_matmul(x, jnp.full((8, 16), 0.5, jnp.bfloat16))
  assert out.dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(out, np.float32), 4.0)


def test_wide_convs_keep_the_library_kernel():
  # The measured crossover (module doc): many input channels, or 32 with a masked vector tail.
  assert not narrow_conv.use_broadcast_sum(96, 16)
  assert not narrow_conv.use_broadcast_sum(32, 28)
  assert narrow_conv.use_shifted_conv(3, 3) and not narrow_conv.use_shifted_conv(16, 3)
