"""Evaluation loop shared by evaluate.py and training: model → test-time path → AP, results and PNGs.

  config's eval split: the data pipeline's ordered eval batches (`data.pipeline.make_eval_dataset`, every
  dataset name: 'crowdpose' / 'coco' (TFDS), 'coco_json', 'synthetic') and its ground truth
  (`data.pipeline.eval_annotation_file`)
    → Predictor.predict_batch (jitted forward + flip, aggregation, decode, back-projection)
    → evaluation.KeypointEvaluator (COCO / CrowdPose AP) → results.json, metrics.json
    → the N images with the lowest mean OKS (evaluation's OKS, greedy matching) drawn as PNGs:
      prediction | ground truth, on the network input the model saw.

Batches are dicts with the pipeline's eval keys: 'image' [B,h',w',3] (normalised network input),
'image_id' [B], 'center' [B,2], 'scale' [B,2], '_mask' [B]. Images of one batch share their input shape,
so each shape compiles once. TensorFlow runs only inside the data pipeline, imported when a split is
opened; `run` itself takes any iterable of such batches.
"""

from __future__ import annotations

import heapq
import json
import os
import pathlib
import pickle
import time
from typing import Any, Dict, Iterable, Iterator, List, NamedTuple, Optional, Tuple

import numpy as np

from litepose_jax import evaluation
from litepose_jax import from_config
from litepose_jax import inference
from litepose_jax import keypoints as kp_lib
from litepose_jax import visualize
from litepose_jax.evaluation import evaluator as evaluator_lib

def ground_truth(config) -> evaluation.GroundTruth:
  """The parsed ground truth of config's eval split (cheap checks first: call it before loading a model).

  Raises:
    ValueError: settings the eval split cannot serve (multi-scale test, missing dataset keys).
    FileNotFoundError: the split's annotation file is missing.
  """
  scales = tuple(float(s) for s in config.eval.scales)
  if scales != (1.0,):
    raise ValueError(f'config.eval.scales={scales}: evaluation reads the data pipeline\'s single-scale eval '
                     'batches; multi-scale testing is available through inference.Predictor (predict.py)')
  from litepose_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  ann_file = pipeline.eval_annotation_file(config)
  if not os.path.isfile(ann_file):
    raise FileNotFoundError(
        f'{ann_file}: ground truth of the {config.dataset.name!r} eval split not found (see the README\'s '
        'data layout), or evaluate a COCO-format json: --config.dataset.name=coco_json '
        '--config.dataset.ann_file=FILE --config.dataset.image_dir=DIR')
  return evaluation.load_ground_truth(ann_file, from_config.keypoint_set(config),
                                      skip_bad_samples=bool(config.dataset.skip_bad_samples))


def eval_batches(config, input_size: int, process_index: int = 0,
                 process_count: int = 1) -> Iterator[Dict[str, np.ndarray]]:
  """The data pipeline's eval batches of config's eval split as NumPy, resized for `input_size`; with
  several processes, this process's slice of every global batch."""
  from litepose_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  if input_size != from_config.input_size(config):
    # A checkpoint may carry another architecture than the config names: resize for the model's input.
    config = config.copy_and_resolve_references()
    with config.unlocked():
      config.input.size = int(input_size)
  return pipeline.make_eval_dataset(config, process_index=process_index,
                                    process_count=process_count).as_numpy_iterator()


def all_gather_objects(items: List[Any]) -> List[Any]:
  """Every process's list of picklable items, concatenated in process order, on every process.

  One all-gather of the lengths and one of the pickled bytes (padded to the longest) through JAX's
  cross-process collectives (gloo on CPU, the interconnect on TPU/GPU); every process must call it.
  """
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_count() == 1:
    return list(items)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  data = np.frombuffer(pickle.dumps(list(items), protocol=pickle.HIGHEST_PROTOCOL), np.uint8)
  sizes = np.asarray(multihost_utils.process_allgather(np.array([data.size], np.int32))).reshape(-1)
  padded = np.zeros(int(sizes.max()), np.uint8)
  padded[:data.size] = data
  rows = np.asarray(multihost_utils.process_allgather(padded))
  out = []
  for row, size in zip(rows, sizes):
    out.extend(pickle.loads(row[:int(size)].tobytes()))
  return out


class Worst(NamedTuple):
  """An image kept for the worst-image PNGs: its quality, predictions and network input.

  quality: mean OKS (`image_quality`); keypoints [P,K,3] in image pixels; scores [P]; image [h',w',3]
  uint8 network input; center, scale [2]: its back-projection parameters; inputs [h',w',3] the normalised
  network input itself (to recompute its maps for the heatmap / tag views).
  """
  quality: float
  image_id: int
  keypoints: np.ndarray
  scores: np.ndarray
  image: np.ndarray
  center: np.ndarray
  scale: np.ndarray
  inputs: Optional[np.ndarray] = None


def _people(gt: evaluation.GroundTruth, image_id: int) -> slice:
  """The GT people of an image (people are stored image by image, images in ascending id order)."""
  i = int(gt.index_of_images(np.array([image_id]))[0])
  if i < 0:
    return slice(0, 0)
  lo, hi = np.searchsorted(gt.image_index, [i, i + 1])
  return slice(int(lo), int(hi))


def image_quality(keypoints: np.ndarray, scores: np.ndarray, gt: evaluation.GroundTruth, image_id: int,
                  object_scale: np.ndarray, keypoint_set: kp_lib.KeypointSet, max_dets: int = 20) -> float:
  """Mean OKS of an image's GT people with their greedily matched detections (1.0 when none counts).

  Only ranks images for the worst-image PNGs (the metrics come from the evaluator). OKS and object scale
  are litepose_jax.evaluation's; GT people the evaluator ignores (crowd, no labelled joint) do not count.
  Matching: among the max_dets best-scored detections, greedily by OKS (the best remaining detection-GT
  pair first), one detection per GT person; unmatched GT people count 0.

  Args:
    keypoints: [P,K,3] detections in image pixels; scores: [P].
    gt: the ground truth; image_id: the image.
    object_scale: [N] object scale² of every GT person (`evaluation.evaluator.object_scale`).
    keypoint_set: the OKS sigmas.
  Returns:
    Mean OKS in [0, 1] over the image's counted GT people.
  """
  people = _people(gt, image_id)
  counted = ~gt.ignore[people]
  if not counted.any():
    return 1.0
  if not len(scores):
    return 0.0
  order = np.argsort(-np.asarray(scores), kind='stable')[:max_dets]
  o = evaluation.oks(np.asarray(keypoints, np.float64)[order][:, None], gt.keypoints[people][counted][None],
                     gt.bbox[people][counted][None], object_scale[people][counted][None],
                     keypoint_set.sigmas_array)  # [D, G]
  total = 0.0
  for _ in range(min(o.shape)):
    d, g = np.unravel_index(np.argmax(o), o.shape)
    total += float(o[d, g])
    o[d, :], o[:, g] = -1.0, -1.0
  return total / o.shape[1]


def _subset(gt: evaluation.GroundTruth, image_ids: Iterable[int]) -> Dict[str, Any]:
  """The ground-truth json restricted to some images (for evaluating part of a split)."""
  ids = set(image_ids)
  data = gt.dataset
  return dict(data, images=[im for im in data['images'] if im['id'] in ids],
              annotations=[a for a in data['annotations'] if a.get('image_id') in ids])


class RunResult(NamedTuple):
  """metrics {name: value}; worst: the worst images, worst first; timing {'images', 'seconds' (wall
  time, compilation and input included), 'images_per_second' (the test path on batches of an already
  compiled input shape; the overall rate when every batch compiled)}."""
  metrics: Dict[str, float]
  worst: List[Worst]
  timing: Dict[str, float]


def run(predictor: inference.Predictor, batches: Iterable[Dict[str, Any]],
        evaluator: evaluation.KeypointEvaluator, *, variables=None, num_worst: int = 0, max_images: int = 0,
        total: Optional[int] = None, progress: bool = True, process_index: int = 0,
        process_count: int = 1) -> RunResult:
  """Runs the test-time path over eval batches, feeding `evaluator`, and computes the metrics.

  Args:
    predictor: the test-time path: anything with `predict_batch(batch, variables) -> (keypoints
      [B,S,K,3] in image pixels, scores [B,S], valid [B,S])`, normally an inference.Predictor.
    batches: eval batches (module docstring).
    evaluator: the split's KeypointEvaluator (its ground truth also ranks the worst images); it holds
      the added results afterwards (`write_results`).
    variables: weights to use instead of the predictor's own.
    num_worst: how many of the lowest-quality images to keep (`image_quality`).
    max_images: stop after this many images (0: all); the metrics then cover those images only.
    total: number of images, for the progress bar.
    process_index, process_count: with several processes, `batches` are this process's slices of the
      global batches (`eval_batches`); every process decodes its images, then the predictions and worst
      images of all processes are gathered (`all_gather_objects`, every process must call `run`) and
      added to `evaluator` in global order, so the metrics are those one process gets on all images.
  Returns:
    RunResult (the same metrics and worst images on every process; timing of this process). When the
    batches did not cover every GT image (max_images, or images the data pipeline skipped), the metrics
    are computed on the GT of the evaluated images.
  """
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  gt, ks = evaluator.gt, evaluator.keypoint_set
  scale = evaluator_lib.object_scale(gt, ks, evaluator.protocol) if num_worst else None
  heap: List[tuple] = []  # (−quality, image_id, Worst): the root is the best of the kept worst ones
  seen: List[int] = []
  decoded: List[tuple] = []  # (global position, image id, keypoints, scores): gathered across processes
  bar = tqdm(total=total, unit='img', disable=not progress, dynamic_ncols=True)
  start = time.perf_counter()
  shapes, steady = set(), [0, 0.0]  # images and seconds of batches whose input shape was compiled before
  done = False
  for index, batch in enumerate(batches):
    local = len(batch['_mask'])
    first = (index * process_count + process_index) * local   # global position of the batch's first row
    if max_images and index * process_count * local >= max_images:
      break
    tick = time.perf_counter()
    kp, scores, valid = predictor.predict_batch(batch, variables)
    if batch['image'].shape in shapes:
      steady[0] += int(np.sum(batch['_mask']))
      steady[1] += time.perf_counter() - tick
    shapes.add(batch['image'].shape)
    for j in np.flatnonzero(batch['_mask']):
      if max_images and (first + j >= max_images if process_count > 1 else len(seen) >= max_images):
        done = process_count == 1
        break
      image_id = int(batch['image_id'][j])
      keep = valid[j]
      if process_count > 1:
        decoded.append((first + int(j), image_id, kp[j][keep], scores[j][keep]))
      else:
        evaluator.add(image_id, kp[j][keep], scores[j][keep])
      seen.append(image_id)
      bar.update(1)
      if num_worst:
        q = image_quality(kp[j][keep], scores[j][keep], gt, image_id, scale, ks, evaluator.protocol.max_dets)
        item = (-q, image_id, Worst(q, image_id, kp[j][keep], scores[j][keep],
                                    inference.to_uint8(batch['image'][j]), batch['center'][j],
                                    batch['scale'][j], batch['image'][j]))
        if len(heap) < num_worst:
          heapq.heappush(heap, item)
        elif item[0] > heap[0][0]:  # worse than the best image kept so far
          heapq.heapreplace(heap, item)
    if done:
      break
  bar.close()
  if process_count > 1:
    decoded = sorted(all_gather_objects(decoded), key=lambda item: item[0])   # the 1-process order
    for _, image_id, image_kp, image_scores in decoded:
      evaluator.add(image_id, image_kp, image_scores)
    seen = [image_id for _, image_id, _, _ in decoded]
    heap = all_gather_objects(heap)
    heap = sorted(heap, key=lambda t: (-t[0], t[1]))[:num_worst]   # the worst of all processes
  seconds = time.perf_counter() - start
  # Speed of the test path without compilation (batches of an already compiled shape), when there are any.
  speed = steady[0] / steady[1] if steady[1] else len(seen) / max(seconds, 1e-9)
  timing = {'images': len(seen), 'seconds': seconds, 'images_per_second': speed}
  scored = evaluator
  if set(seen) != set(gt.image_ids.tolist()):
    scored = evaluation.KeypointEvaluator(_subset(gt, seen), ks, protocol=evaluator.protocol,
                                          backend=evaluator.backend)
    scored.add_results(evaluator.results())
  worst = [w for _, _, w in sorted(heap, key=lambda t: (-t[0], t[1]))]
  return RunResult(scored.compute(), worst, timing)


def write_worst(workdir: str, worst: Iterable[Worst], gt: evaluation.GroundTruth,
                keypoint_set: kp_lib.KeypointSet, views: Tuple[str, ...] = (),
                predictor: Optional[inference.Predictor] = None, variables=None) -> List[str]:
  """PNGs of the worst images (visualize.prediction_vs_truth) in workdir/worst_images/.

  Args:
    views: 'heatmaps' / 'tags' (config.eval.worst_image_views) add the map views under each pair; the maps
      are recomputed by `predictor` (with `variables`) on each worst image's stored network input.
  Returns:
    The written paths.
  """
  out_dir = pathlib.Path(workdir) / 'worst_images'
  out_dir.mkdir(parents=True, exist_ok=True)
  written = []
  map_views = tuple(v for v in views if v != 'skeleton')
  for rank, item in enumerate(worst):
    path = out_dir / f'{rank:02d}_{item.image_id}_oks{item.quality:.2f}.png'
    heat = tags = None
    if map_views:
      out = predictor.predict_prepared([item.inputs[None]], item.center[None], item.scale[None], variables,
                                       with_maps=True)
      heat, tags = out[3][0], out[4][0]
    drawing = visualize.prediction_vs_truth(item.image, item.keypoints, item.scores,
                                            gt.keypoints[_people(gt, item.image_id)], item.center, item.scale,
                                            keypoint_set.skeleton, heatmaps=heat, tags=tags, views=map_views,
                                            joint_names=keypoint_set.joint_names)
    visualize.write_rgb(str(path), drawing)
    written.append(str(path))
  return written


def evaluate(config, model, variables, keypoint_set: kp_lib.KeypointSet, input_size: int,
             workdir: Optional[str] = None, progress: bool = True,
             gt: Optional[evaluation.GroundTruth] = None) -> Dict[str, float]:
  """Evaluates on config's eval split; writes results.json, metrics.json and worst-image PNGs to workdir.

  Args:
    config: reads dataset.* (the split), eval.* (test path, decoder, max_images, num_worst_images).
    model, variables, keypoint_set, input_size: as `from_config.load_model` returns them.
    workdir: where to write (None: nothing is written).
    gt: the split's parsed ground truth (default: `ground_truth(config)`).
  Returns:
    The metrics dict (AP, AP50, ...), plus 'images_per_second' (see RunResult; compilation excluded when
    some batch reused a compiled input shape).
  """
  import jax  # pylint: disable=g-import-not-at-top
  views = visualize.parse_views(config.eval.worst_image_views)   # a typo fails before the run, not after
  gt = gt or ground_truth(config)
  predictor = from_config.predictor(config, model, variables, keypoint_set, input_size)
  evaluator = evaluation.KeypointEvaluator(gt, keypoint_set)
  max_images = int(config.eval.max_images)
  pidx, pcount = jax.process_index(), jax.process_count()
  # With several processes each decodes its slice of every batch (run() gathers the predictions); only
  # process 0 writes, but all rank the worst images (the ranking is part of the gathered work).
  num_worst = int(config.eval.num_worst_images) if (workdir or pcount > 1) else 0
  result = run(predictor, eval_batches(config, input_size, pidx, pcount), evaluator,
               num_worst=num_worst, max_images=max_images,
               total=min(len(gt.image_ids), max_images or len(gt.image_ids)) // pcount,
               progress=progress and pidx == 0, process_index=pidx, process_count=pcount)
  if pidx != 0:
    workdir = None
  if workdir:
    os.makedirs(workdir, exist_ok=True)
    evaluator.write_results(os.path.join(workdir, 'results.json'))
    with open(os.path.join(workdir, 'metrics.json'), 'w') as f:
      json.dump({k: float(v) for k, v in result.metrics.items()}, f, indent=1)
    write_worst(workdir, result.worst, gt, keypoint_set, views, predictor)
  return dict(result.metrics, images_per_second=result.timing['images_per_second'])
