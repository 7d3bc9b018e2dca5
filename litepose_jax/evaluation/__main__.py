"""Evaluate a COCO keypoint results json against ground truth and print the AP/AR table.

  python -m litepose_jax.evaluation --gt GT.json --results RES.json [--dataset crowdpose|coco] \
      [--out metrics.json] [--backend numpy|pycocotools]

`--out` writes one json object keyed AP, AP50, AP75, AR, AR50, AR75 (+ APm, APl, ARm, ARl for COCO |
AP_easy, AP_medium, AP_hard for CrowdPose). The dataset defaults to the one with the GT's joint count.
"""

import json
import os
import sys

from absl import app
from absl import flags

from litepose_jax import evaluation

_GT = flags.DEFINE_string('gt', None, 'COCO-format keypoint ground-truth json.', required=True)
_RESULTS = flags.DEFINE_string('results', None, 'COCO keypoint results json.', required=True)
_DATASET = flags.DEFINE_enum('dataset', None, ['crowdpose', 'coco'],
                             'Keypoint set / protocol; default: inferred from the GT joint count.')
_OUT = flags.DEFINE_string('out', None, 'Write the metrics to this json file.')
_BACKEND = flags.DEFINE_enum('backend', 'numpy', ['numpy', 'pycocotools'], 'Evaluation backend.')


def main(argv):
  del argv
  try:
    metrics = evaluation.evaluate(_GT.value, _RESULTS.value, _DATASET.value, backend=_BACKEND.value)
  except ValueError as e:  # bad input: one clear line, no traceback
    print(f'error: {e}', file=sys.stderr)
    return 1
  print(evaluation.format_table(metrics, title=f'{_RESULTS.value} vs {_GT.value}'))
  if _OUT.value:
    os.makedirs(os.path.dirname(_OUT.value) or '.', exist_ok=True)
    with open(_OUT.value, 'w') as f:
      json.dump(metrics, f, indent=1)
  return 0


if __name__ == '__main__':
  from litepose_jax import runtime  # pylint: disable=g-import-not-at-top
  app.run(main, flags_parser=runtime.parse_flags)   # a bad flag: one line, exit 2
