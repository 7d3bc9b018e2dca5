"""Smoke-test search config: the synthetic set, tiny splits and batches (tests/nas/test_nas_search.py).

  python -m litepose_jax.nas.search --config=configs/search_tiny.py --supernet=DIR --macs=2G \\
      --workdir=/tmp/search --population=2 --iterations=1 --max_images=2 --calib_batches=1 \\
      --resolutions=256 --downscale=4

Candidates are scored at img_size // downscale (64 px with --resolutions=256 --downscale=4): mechanics only.
"""

from configs import common


def get_config(arg: str = 'crowdpose'):
  c = common.get_config(arch='xs', dataset=arg or 'crowdpose')
  c.model.depthwise_impl = 'xla'     # compiles faster than the CPU shift form; speed is moot here
  c.dataset.name = 'synthetic'
  c.dataset.synthetic_train_images = 16
  c.dataset.synthetic_val_images = 8
  c.input.batch_size = 4
  c.input.shuffle_buffer = 16
  c.eval.batch_size = 2
  c.eval.flip_test = False           # half the test-path work; the search's mechanics are the same
  return c
