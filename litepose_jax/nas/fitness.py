"""A search candidate's fitness: BN re-calibration on the supernet, then AP on held-out images (no TF).

  score = SubnetScorer(variables, keypoint_set, predictor_factory, gt, data)(subnet)
    1. `nas.recalibrate(variables, subnet, calibration images at the subnet's resolution)` (nas spec §5:
       reset and average; the authors kept the supernet's EMA and updated it with momentum 0.1);
    2. the whole test-time path (flip, aggregation, our jitted decoder, back-projection:
       `inference.Predictor` on `nas.MaskedSupernet`) with the subnet's masks, over the held-out eval batches;
    3. AP by `evaluation.KeypointEvaluator` on those images (`eval_lib.run`).
The batches come in as NumPy (`SearchData`, filled by nas/search_data.py, which holds the TensorFlow
input pipelines), so this module and everything it imports stay free of TensorFlow. The subnet reaches
the jitted programs as mask arrays, so each input shape compiles once for the whole search (one
re-calibration program and one test-path program per resolution), never once per candidate.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Dict, List, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from litepose_jax import eval_lib
from litepose_jax import evaluation
from litepose_jax.nas import bn_calibration
from litepose_jax.nas import space
from litepose_jax.nas.supernet import subnet_masks


@dataclasses.dataclass
class SearchData:
  """Per resolution I (the subnet's img_size): NumPy batches, loaded on first use.

  calibration(I) → list of images [B,I',I',3] (the training preprocessing at I' = I // downscale);
  evaluation(I) → list of eval-pipeline batch dicts at I' ('image', 'image_id', 'center', 'scale',
  '_mask'; eval_lib's format) holding exactly the first `max_images` held-out images.
  """
  calibration: Callable[[int], List[np.ndarray]]
  evaluation: Callable[[int], List[Dict[str, np.ndarray]]]
  max_images: int

  def __post_init__(self):
    self._cache: Dict[tuple, Any] = {}

  def get(self, kind: str, resolution: int):
    key = (kind, int(resolution))
    if key not in self._cache:
      self._cache[key] = getattr(self, kind)(int(resolution))
    return self._cache[key]


class SubnetScorer:
  """`scorer(subnet)` → {'AP', every metric, 'seconds', 'calibration_seconds', 'eval_seconds'}.

  Args:
    variables: supernet {'params', 'batch_stats'}.
    predictor: an `inference.Predictor` built on `nas.MaskedSupernet` (its flip / decoder settings are the
      search's test path; its own variables are unused).
    gt: the held-out split's parsed ground truth.
    keypoint_set: the KeypointSet.
    data: SearchData.
    depthwise_impl: the depthwise form of the re-calibration forward.
  """

  def __init__(self, variables: Mapping, predictor, gt: evaluation.GroundTruth, keypoint_set,
               data: SearchData, depthwise_impl: str = 'auto'):
    # Parameters go to the device once; every candidate only replaces the (small) BN statistics.
    self.variables = {'params': jax.device_put(variables['params']),
                      'batch_stats': variables['batch_stats']}
    self.predictor, self.gt, self.keypoint_set, self.data = predictor, gt, keypoint_set, data
    self.depthwise_impl = depthwise_impl
    self.evaluations = 0

  def calibrated(self, subnet: space.Subnet) -> Dict[str, Any]:
    """Supernet variables with `subnet`'s re-calibrated BN statistics."""
    return bn_calibration.recalibrate(self.variables, subnet, self.data.get('calibration', subnet.img_size),
                                      depthwise_impl=self.depthwise_impl)

  def __call__(self, subnet: space.Subnet) -> Dict[str, float]:
    start = time.perf_counter()
    net = self.calibrated(subnet)
    jax.block_until_ready(jax.tree.leaves(net['batch_stats']))
    calibrated_at = time.perf_counter()
    evaluator = evaluation.KeypointEvaluator(self.gt, self.keypoint_set)
    variables = {'net': {'params': net['params'], 'batch_stats': jax.device_put(net['batch_stats'])},
                 'masks': {k: jnp.asarray(v) for k, v in subnet_masks(subnet).items()}}
    # The batches hold exactly the images to score (SearchData): no max_images here, eval_lib.run's counts
    # batch slots, padding included.
    result = eval_lib.run(self.predictor, self.data.get('evaluation', subnet.img_size), evaluator,
                          variables=variables, progress=False)
    end = time.perf_counter()
    self.evaluations += 1
    return dict({k: float(v) for k, v in result.metrics.items()}, seconds=end - start,
                calibration_seconds=calibrated_at - start, eval_seconds=end - calibrated_at,
                images=int(result.timing['images']))
