"""ONNX export of the network (variant A), written node by node from the Flax variables with `onnx`.

  loaded = checkpoint.load_model(CKPT)
  export_onnx(loaded, (1, 256, 256, 3), 'xs.onnx')          # input 'images' [B,H,W,3], batch symbolic

The graph is the one ONNX Runtime's CPU kernels are built for, the same as a PyTorch user's
`torch.onnx.export` gives: NCHW inside, each convolution one `Conv` with its BatchNorm folded into its
weights and bias (depthwise convs as `Conv` with group = channels, 7x7 in one node), ReLU6 as `Clip`. The fusion
head's transposed convs (k4 s2 p1) differ from the PyTorch export: each is a 2x2 `Conv` (padded by 1) to
its four output phases with the shared BatchNorm folded in, the pair summed and ReLU'd in that layout, then
one `DepthToSpace` and a `Slice` of the outer ring (chosen because ONNX Runtime runs `ConvTranspose` as GEMM + col2im outside its blocked NCHWc conv path,
~17% of the anchor's XS run; measured gain within noise, docs/cpu_inference.md;
`deconv='convtranspose'` writes the PyTorch form, with the BatchNorm folded too). The only layout
changes are one `Transpose` after the input and one before each output, so the file takes and returns
the JAX model's NHWC tensors (`layout='nchw'` drops them).

Why not a JAX-to-ONNX converter: jax2onnx (the earlier route) traced the NHWC JAX program and wrote what
it saw: a Transpose pair around every native conv, the 1x1 convs as Einsum over NHWC tensors, and each
BatchNorm computed at run time (Add/Sqrt/Div/Mul) with Reshape/Expand/Concat shape arithmetic for the
symbolic batch: XS 2431 nodes, against 234 here and 113 Conv in both this graph and the PyTorch
export, and 2-2.4x slower than the PyTorch export under the same ONNX Runtime (docs/cpu_inference.md).
It also pins orbax-checkpoint below our pin, so it needed its own environment. The network is a fixed
stack of five layer kinds, so writing it directly is a few dozen lines that depend only on `onnx`
(installed with requirements.txt). The walk below mirrors `models/litepose.py`; tests/test_export_onnx.py
holds it to the JAX model and the authors' PyTorch outputs.

Shapes (B batch, H×W input, K joints): images [B,H,W,3] float32 → out_quarter [B,H/4,W/4,2K],
out_half [B,H/2,W/2,K] (NCHW with layout='nchw': [B,3,H,W] → [B,2K,H/4,W/4], [B,K,H/2,W/2]).
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Mapping, Optional, Sequence, Tuple

import numpy as np

from litepose_jax.models import layers

OPSET = 17
IR_VERSION = 8  # the lowest IR that carries opset 17: runtimes back to ONNX Runtime 1.11 read the file
INPUT_NAME = 'images'
OUTPUTS = ('out_quarter', 'out_half')


def available() -> bool:
  """True: the `onnx` package is part of requirements.txt (kept for callers of the old optional route)."""
  return True


class _Graph:
  """Collects nodes and initializers; every node has one output, named after the node."""

  def __init__(self):
    from onnx import helper, numpy_helper  # pylint: disable=g-import-not-at-top
    self._helper, self._numpy = helper, numpy_helper
    self.nodes, self.initializers = [], []
    self._scalars = {}

  def const(self, name: str, value: np.ndarray, dtype=np.float32) -> str:
    self.initializers.append(self._numpy.from_array(np.ascontiguousarray(value, dtype), name))
    return name

  def scalar(self, value: float) -> str:
    if value not in self._scalars:
      self._scalars[value] = self.const(f'scalar_{value:g}', np.asarray(value, np.float32))
    return self._scalars[value]

  def node(self, op: str, inputs: Sequence[str], name: str, **attrs) -> str:
    self.nodes.append(self._helper.make_node(op, list(inputs), [name], name=name, **attrs))
    return name


def _fold_bn(params: Mapping[str, Any], stats: Mapping[str, Any]) -> Tuple[np.ndarray, np.ndarray]:
  """Eval BatchNorm as y = x·a + b (float64), as `layers.BatchNorm` computes it."""
  scale, bias = (np.asarray(params[k], np.float64) for k in ('scale', 'bias'))
  mean, var = (np.asarray(stats[k], np.float64) for k in ('mean', 'var'))
  a = scale / np.sqrt(var + layers.BatchNorm.epsilon)
  return a, bias - mean * a


def _act(g: _Graph, x: str, act: Optional[str], name: str) -> str:
  if act == 'relu6':
    return g.node('Clip', [x, g.scalar(0.0), g.scalar(6.0)], f'{name}/relu6')
  if act == 'relu':
    return g.node('Relu', [x], f'{name}/relu')
  return x


def _conv_bn(g: _Graph, x: str, params, stats, name: str, stride: int = 1, act: Optional[str] = 'relu6') -> str:
  """ConvBN (dense [k,k,Cin,Cout] or depthwise [k,k,C] kernel) → one Conv with the BN folded in."""
  kernel = np.asarray(params['conv']['kernel'], np.float64)
  a, b = _fold_bn(params['bn'], stats['bn'])
  if kernel.ndim == 3:  # depthwise [k,k,C] → [C,1,k,k], group C
    weight, group = kernel.transpose(2, 0, 1)[:, None], kernel.shape[-1]
  else:  # HWIO → OIHW
    weight, group = kernel.transpose(3, 2, 0, 1), 1
  k = kernel.shape[0]
  y = g.node('Conv', [x, g.const(f'{name}/weight', weight * a[:, None, None, None]), g.const(f'{name}/bias', b)],
             f'{name}/conv', kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4, group=group)
  return _act(g, y, act, name)


def _sep_conv(g: _Graph, x: str, params, stats, name: str) -> str:
  """SepConv: depthwise ConvBN + ReLU, then the 1x1 conv without bias."""
  y = _conv_bn(g, x, params['depthwise'], stats['depthwise'], f'{name}/depthwise', act='relu')
  kernel = np.asarray(params['pointwise']['kernel'], np.float64)  # [1,1,C,O]
  return g.node('Conv', [y, g.const(f'{name}/pointwise/weight', kernel.transpose(3, 2, 0, 1))],
                f'{name}/pointwise', kernel_shape=[1, 1])


def _fuse(g: _Graph, refined: str, raw: str, params, stats, i: int, deconv: str) -> str:
  """ReLU(BN(deconv_refined(refined) + deconv_raw(raw))), the BN folded into both transposed convs.

  deconv='subpixel': each transposed conv k4 s2 p1 as one 2x2 stride-1 Conv (padded by 1) to its four
  output phases (4·Cout channels, the window form of `layers.deconv_2x_window`: every product a needed
  one), the two summed and activated in that phase layout, then one DepthToSpace interleaves the phases
  and a Slice crops the outer ring. 'convtranspose': two
  ConvTranspose nodes, Add, Relu (the PyTorch export's form).
  """
  a, b = _fold_bn(params[f'deconv_bn{i}'], stats[f'deconv_bn{i}'])
  outs = []
  for kind, x in (('refined', refined), ('raw', raw)):
    kernel = np.asarray(params[f'deconv_{kind}{i}']['kernel'], np.float64) * a  # [4,4,Cin,Cout]
    if deconv == 'subpixel':
      # The window form of `layers.deconv_2x_window`: [t, t', C, u, u', O] → ONNX [(2u + u')·O + o, C, t, t'].
      cin, cout = kernel.shape[2:]
      window = layers.deconv_window_kernel(kernel).transpose(3, 4, 5, 2, 0, 1)
      inputs = [x, g.const(f'deconv_{kind}{i}/weight', window.reshape(4 * cout, cin, 2, 2))]
      if kind == 'refined':  # DepthToSpace 'DCR' reads channel (2u + u')·Cout + o
        inputs.append(g.const(f'deconv_{kind}{i}/bias', np.tile(b, 4)))
      outs.append(g.node('Conv', inputs, f'deconv_{kind}{i}', kernel_shape=[2, 2], pads=[1, 1, 1, 1]))
    else:
      # Our [4,4,Cin,Cout] is PyTorch's (Cin, Cout, 4, 4) transposed, ONNX's ConvTranspose layout.
      inputs = [x, g.const(f'deconv_{kind}{i}/weight', kernel.transpose(2, 3, 0, 1))]
      if kind == 'refined':
        inputs.append(g.const(f'deconv_{kind}{i}/bias', b))
      outs.append(g.node('ConvTranspose', inputs, f'deconv_{kind}{i}', kernel_shape=[4, 4], strides=[2, 2],
                         pads=[1, 1, 1, 1]))
  y = g.node('Relu', [g.node('Add', outs, f'deconv_sum{i}')], f'deconv_relu{i}')
  if deconv == 'subpixel':
    y = g.node('DepthToSpace', [y], f'deconv_phases{i}', blocksize=2, mode='DCR')
    y = g.node('Slice', [y, g.const(f'deconv_crop{i}/starts', np.array([1, 1]), np.int64),
                         g.const(f'deconv_crop{i}/ends', np.array([-1, -1]), np.int64),
                         g.const(f'deconv_crop{i}/axes', np.array([2, 3]), np.int64)], f'deconv_crop{i}')
  return y


def network_graph(model, variables: Mapping[str, Any], input_shape: Sequence[int], dynamic_batch: bool = True,
                  layout: str = 'nhwc', metadata: Optional[Mapping[str, Any]] = None,
                  deconv: str = 'subpixel'):
  """The network (variant A) of `model` (a `LitePose`) with `variables` as an onnx.ModelProto.

  Args:
    model: the LitePose module (its `arch` gives the structure; depthwise_impl does not matter).
    variables: {'params', 'batch_stats'} (eval mode: BatchNorm uses the running statistics).
    input_shape: [B,H,W,3]; H and W are fixed in the file (divisible by 16).
    dynamic_batch: the batch dimension is the symbol 'B' (else input_shape[0]).
    layout: 'nhwc' (input [B,H,W,3], outputs NHWC, as the JAX model) or 'nchw'.
    metadata: stored as JSON under the key 'litepose' of the model's metadata_props.
    deconv: 'subpixel' (default, faster under ONNX Runtime) or 'convtranspose', see `_fuse`.
  """
  from onnx import TensorProto, helper  # pylint: disable=g-import-not-at-top
  if deconv not in ('subpixel', 'convtranspose'):
    raise ValueError(f"deconv must be 'subpixel' or 'convtranspose', got {deconv!r}")
  if layout not in ('nhwc', 'nchw'):
    raise ValueError(f"layout must be 'nhwc' or 'nchw', got {layout!r}")
  b, h, w, c = (int(d) for d in input_shape)
  if c != 3 or h % 16 or w % 16:
    raise ValueError(f'input shape must be [B,H,W,3] with H, W divisible by 16, got {tuple(input_shape)}')
  params = variables['params']
  stats = variables['batch_stats']
  arch = model.arch
  g = _Graph()

  x = g.node('Transpose', [INPUT_NAME], 'images_nchw', perm=[0, 3, 1, 2]) if layout == 'nhwc' else INPUT_NAME
  x = _conv_bn(g, x, params['stem_conv'], stats['stem_conv'], 'stem_conv', stride=2)
  x = _conv_bn(g, x, params['stem_dw'], stats['stem_dw'], 'stem_dw')
  x = _conv_bn(g, x, params['stem_proj'], stats['stem_proj'], 'stem_proj', act=None)
  feats, cin = [x], arch.stem_channels
  for s, stage in enumerate(arch.stages, start=1):
    for j in range(len(stage.blocks)):
      name = f'stage{s}_block{j}'
      p, st = params[name], stats[name]
      stride = stage.stride if j == 0 else 1
      y = _conv_bn(g, x, p['expand'], st['expand'], f'{name}/expand')
      y = _conv_bn(g, y, p['depthwise'], st['depthwise'], f'{name}/depthwise', stride=stride)
      y = _conv_bn(g, y, p['project'], st['project'], f'{name}/project', act=None)
      x = g.node('Add', [y, x], f'{name}/residual') if stride == 1 and cin == stage.channels else y
      cin = stage.channels
    feats.append(x)
  s0, s1, s2, s3, s4 = feats

  r0 = _fuse(g, s4, s3, params, stats, 0, deconv)
  r1 = _fuse(g, r0, s2, params, stats, 1, deconv)
  quarter = g.node('Add', [_sep_conv(g, r1, params['final_refined0'], stats['final_refined0'], 'final_refined0'),
                           _sep_conv(g, s1, params['final_raw0'], stats['final_raw0'], 'final_raw0')],
                   'out_quarter_nchw' if layout == 'nhwc' else OUTPUTS[0])
  r2 = _fuse(g, r1, s1, params, stats, 2, deconv)
  half = g.node('Add', [_sep_conv(g, r2, params['final_refined1'], stats['final_refined1'], 'final_refined1'),
                        _sep_conv(g, s0, params['final_raw1'], stats['final_raw1'], 'final_raw1')],
                'out_half_nchw' if layout == 'nhwc' else OUTPUTS[1])
  if layout == 'nhwc':
    g.node('Transpose', [quarter], OUTPUTS[0], perm=[0, 2, 3, 1])
    g.node('Transpose', [half], OUTPUTS[1], perm=[0, 2, 3, 1])

  k = int(np.asarray(params['final_refined1']['pointwise']['kernel']).shape[-1])
  batch = 'B' if dynamic_batch else b
  shapes = {INPUT_NAME: (batch, h, w, 3), OUTPUTS[0]: (batch, h // 4, w // 4, 2 * k),
            OUTPUTS[1]: (batch, h // 2, w // 2, k)}
  if layout == 'nchw':
    shapes = {n: (s[0], s[3], s[1], s[2]) for n, s in shapes.items()}
  info = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, list(shapes[n]))
  graph = helper.make_graph(g.nodes, 'litepose', [info(INPUT_NAME)], [info(n) for n in OUTPUTS], g.initializers)
  proto = helper.make_model(graph, opset_imports=[helper.make_opsetid('', OPSET)], producer_name='litepose_jax',
                            ir_version=IR_VERSION)
  if metadata is not None:
    helper.set_model_props(proto, {'litepose': json.dumps(dict(metadata))})
  return proto


def write_network(model, variables: Mapping[str, Any], input_shape: Sequence[int], out: str | os.PathLike,
                  **kwargs) -> pathlib.Path:
  """Writes `network_graph(model, variables, input_shape, **kwargs)` to `out` (checked by onnx.checker)."""
  import onnx  # pylint: disable=g-import-not-at-top
  proto = network_graph(model, variables, input_shape, **kwargs)
  onnx.checker.check_model(proto)
  out = pathlib.Path(out)
  onnx.save(proto, str(out))
  return out


def export_onnx(loaded, input_shape: Sequence[int], out: str | os.PathLike, dynamic_batch: bool = True,
                metadata: Optional[Mapping[str, Any]] = None) -> pathlib.Path:
  """Writes a loaded checkpoint's network (`checkpoint.LoadedModel`) as ONNX; see `network_graph`.

  Returns:
    The written path. Input 'images' [B,H,W,3], outputs 'out_quarter' and 'out_half' (NHWC).
  """
  return write_network(loaded.model, loaded.variables, input_shape, out, dynamic_batch=dynamic_batch,
                       metadata=metadata)
