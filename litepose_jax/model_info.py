"""Model size and compute: parameters, true conv MACs, the published-convention MACs and output shapes.

  python -m litepose_jax.model_info --arch=s [--num_keypoints=14] [--size=448] [--json]

MACs are counted from the shapes seen by every layer during one abstract forward pass (no compute), by
intercepting module calls, so the count follows the network code rather than a second description of it.
Two conventions (spec a.5):
  macs            true multiply-accumulates of convolutions, depthwise convolutions and transposed
                  convolutions (Conv: H'·W'·Cout·Cin/groups·k²; transposed: H·W·Cin·Cout·k²).
  macs_published  what the paper's tables report (ptflops-style module counting): conv MACs + 2·elements per
                  BatchNorm + elements per ReLU/ReLU6, with each stride-2 transposed conv counted at its
                  output resolution (4x its real count, as old ptflops did).
"""

from __future__ import annotations

import json
import math
import sys
from typing import Dict

import flax.linen as nn
import jax
import jax.numpy as jnp
from absl import flags

from litepose_jax import models
from litepose_jax import runtime
from litepose_jax.models import layers


def count(model: models.LitePose, height: int | None = None, width: int | None = None) -> Dict:
  """{'params', 'macs', 'macs_published', 'output_shapes', 'macs_by_kind'} for one image."""
  h = height or model.arch.img_size
  w = width or h
  # MACs belong to the architecture, not to a layer form: count on the 'xla' form, whose forward calls
  # every layer module (the inference forms 'ffi' and 'tflite' fold BatchNorm into the depthwise conv).
  model = model.clone(depthwise_impl='xla')
  tally = {'conv': 0, 'depthwise': 0, 'deconv': 0, 'bn': 0, 'relu': 0, 'deconv_published_extra': 0}

  def interceptor(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    mod = context.module
    if context.method_name != '__call__':
      return out
    x = args[0]
    if isinstance(mod, layers.Conv):
      tally['conv'] += math.prod(out.shape[1:]) * x.shape[-1] * mod.kernel_size ** 2
    elif isinstance(mod, layers.DepthwiseConv):
      tally['depthwise'] += math.prod(out.shape[1:]) * mod.kernel_size ** 2
    elif isinstance(mod, layers.Deconv):   # returns its kernel for input x; the head applies it
      real = math.prod(x.shape[1:]) * mod.features * 16
      tally['deconv'] += real
      tally['deconv_published_extra'] += 3 * real
    elif isinstance(mod, layers.BatchNorm):
      tally['bn'] += 2 * math.prod(out.shape[1:])
      # ReLUs follow the fusion-head BNs (in LitePose itself) and the activated ConvBNs.
      if mod.name.startswith('deconv_bn'):
        tally['relu'] += math.prod(out.shape[1:])
    elif isinstance(mod, layers.ConvBN) and mod.act is not None:
      tally['relu'] += math.prod(out.shape[1:])
    return out

  x = jax.ShapeDtypeStruct((1, h, w, 3), jnp.float32)
  variables = jax.eval_shape(lambda: models.init_variables(model, jax.random.PRNGKey(0), 64))
  with nn.intercept_methods(interceptor):
    outs = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
  macs = tally['conv'] + tally['depthwise'] + tally['deconv']
  return {
      'params': sum(int(math.prod(p.shape)) for p in jax.tree.leaves(variables['params'])),
      'macs': macs,
      'macs_published': macs + tally['deconv_published_extra'] + tally['bn'] + tally['relu'],
      'output_shapes': [list(o.shape) for o in outs],
      'macs_by_kind': {k: tally[k] for k in ('conv', 'depthwise', 'deconv')},
  }


def _flags():
  """The entry point's flags, in a FlagValues of their own (runtime.parse_module_flags)."""
  fv = flags.FlagValues()
  flags.DEFINE_string('arch', 'xs', 'xs | s | m | l | path to an architecture JSON', flag_values=fv)
  flags.DEFINE_integer('num_keypoints', 14, '14 (CrowdPose) or 17 (COCO)', flag_values=fv)
  flags.DEFINE_integer('size', 0, 'input size (default: the architecture\'s)', flag_values=fv)
  flags.DEFINE_bool('json', False, 'print one JSON object', flag_values=fv)
  return fv


def main(argv=None) -> int:
  """`python -m litepose_jax.model_info` (module docstring); argv without the program name."""
  args = _flags()
  code = runtime.parse_module_flags(args, argv, __doc__)
  if code is not None:
    return code
  try:
    model = models.create(args.arch, args.num_keypoints)
  except runtime.INPUT_ERRORS as e:
    return runtime.fail(e, where=f'--arch={args.arch}')
  info = count(model, args.size or None, args.size or None)
  if args.json:
    print(json.dumps({k: info[k] for k in ('params', 'macs', 'macs_published', 'output_shapes')}))
    return 0
  size = args.size or model.arch.img_size
  kinds = info['macs_by_kind']
  print(f'LitePose-{model.arch.name.upper()}  input {size}x{size}  K={args.num_keypoints}')
  print(f'  parameters         {info["params"]:,}')
  print(f'  MACs (true)        {info["macs"] / 1e9:.3f} G  (conv {kinds["conv"] / 1e9:.3f}, depthwise '
        f'{kinds["depthwise"] / 1e9:.3f}, deconv {kinds["deconv"] / 1e9:.3f})')
  print(f'  MACs (published)   {info["macs_published"] / 1e9:.3f} G  (paper convention)')
  print(f'  outputs (NHWC)     {info["output_shapes"][0]}  {info["output_shapes"][1]}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
