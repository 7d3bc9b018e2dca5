"""COCO-style keypoint evaluation (OKS, AP/AR, CrowdPose AP easy/medium/hard), our own NumPy code.

Stable API (used by evaluate.py and the training loop):

  ev = KeypointEvaluator(gt, keypoint_set=None, protocol=None, backend='numpy')
      gt: COCO-format GT json path | parsed dict | GroundTruth (parse once with `load_ground_truth` and
      reuse it across evaluations); keypoint_set: 'crowdpose' | 'coco' | KeypointSet (default: inferred
      from the GT's joint count).
  ev.add(image_id, keypoints [P, K, 3], scores [P], valid=None)   # one image, original-image pixels
  ev.add(list_of_result_dicts) / ev.add_results(list | path)      # COCO results
  ev.add_batch(image_ids [B], keypoints [B, P, K, 3], scores [B, P], valid [B, P])
  ev.results() -> [{image_id, category_id: 1, keypoints: [x, y, v] * K, score, bbox}]  (bbox = joint extent)
  ev.write_results(path)
  ev.compute() -> {'AP', 'AP50', 'AP75', 'AR', 'AR50', 'AR75', + 'APm', 'APl', 'ARm', 'ARl' (COCO)
                   | 'AP_easy', 'AP_medium', 'AP_hard' (CrowdPose)}: floats, -1 when undefined
  evaluate(gt, results, keypoint_set=None, protocol=None, backend='numpy') -> the same dict
  format_table(metrics) -> str
  CLI: python -m litepose_jax.evaluation --gt GT.json --results RES.json [--dataset crowdpose|coco]
       [--out metrics.json]

Semantics are pycocotools' keypoint COCOeval (spec section (f)), reproduced exactly: OKS with the keypoint
set's sigmas; object scale² = GT 'area' (COCO) or bbox w·h·0.53 (CrowdPose, xtcocotools 'keypoints_crowd'
use_area=False, crowdposetools); GTs with iscrowd or num_keypoints == 0 are ignored (a GT without labelled
joints is compared with its bbox grown by one size each side); the 20 best-scored detections per image;
10 OKS thresholds .50:.05:.95; greedy matching best score first with pycocotools' tie and ignore rules;
101 recall points. CrowdPose AP easy/medium/hard: images split by the GT image's `crowdIndex` (< 0.2,
[0.2, 0.8), >= 0.8), each the mean of the precision array over that subset. Which stats a dataset reports
is its `Protocol` (protocol.py), looked up by the keypoint set's name.
Deliberate differences: xtcocotools also drops detections whose joint confidences are all 0 and rounds
the easy/medium/hard values to 4 decimals; crowdposetools and pycocotools do neither, nor do we.
`backend='pycocotools'` runs pycocotools itself on the same inputs (a cross-check; see cocoapi.py).
"""

from litepose_jax.evaluation.accumulate import format_table
from litepose_jax.evaluation.evaluator import evaluate, evaluate_arrays, KeypointEvaluator
from litepose_jax.evaluation.ground_truth import GroundTruth, load_ground_truth
from litepose_jax.evaluation.oks import oks
from litepose_jax.evaluation.protocol import Protocol, AreaRange, CrowdIndexBin
from litepose_jax.evaluation.results import arrays_to_results, read_results, write_results

__all__ = [
    'AreaRange', 'CrowdIndexBin', 'GroundTruth', 'KeypointEvaluator', 'Protocol', 'arrays_to_results',
    'evaluate', 'evaluate_arrays', 'format_table', 'load_ground_truth', 'oks', 'read_results',
    'write_results',
]
