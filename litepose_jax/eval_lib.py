"""Evaluation loop shared by evaluate.py and training: model → test-time path → AP, results and PNGs.

  batches (json + image folder, or the data pipeline's eval set)
    → Predictor.predict_prepared (jitted forward + flip, aggregation, decode, back-projection)
    → evaluation.KeypointEvaluator (COCO / CrowdPose AP) → results.json, metrics.json
    → the N images with the lowest mean OKS drawn as PNGs (prediction | ground truth).

Batches are dicts with the data pipeline's eval keys: 'image' [B,h',w',3] (or 'images', one array per
test scale), 'image_id' [B], 'center' [B,2], 'scale' [B,2], '_mask' [B]. Images of one batch share their
input shape, so each shape compiles once.
"""

from __future__ import annotations

import concurrent.futures
import heapq
import json
import os
import pathlib
import time
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from litepose_jax import checkpoint
from litepose_jax import config_utils
from litepose_jax import convert
from litepose_jax import decode
from litepose_jax import inference
from litepose_jax import keypoints as kp_lib
from litepose_jax import visualize

_AUTHORS_FILES = ('.pth', '.tar', '.npz', '.pt')


def load_model(config, ckpt: str):
  """(model, variables, keypoint_set, input_size) from an orbax checkpoint or an authors' weight file.

  An authors' file (.pth / .pth.tar / .npz) is converted on the fly with the architecture and keypoint set
  of `config`; an orbax checkpoint carries its own (config.model.dtype / depthwise_impl still apply).
  """
  path = pathlib.Path(ckpt)
  if not path.exists():
    raise FileNotFoundError(f'checkpoint {ckpt} does not exist')
  size = int(config.input.get('size', 0) or 0)
  if path.is_file() and path.name.endswith(_AUTHORS_FILES):
    ks = config_utils.keypoint_set(config)
    variables, _ = convert.convert_file(path, config.model.arch, ks.num_keypoints, ks.name)
    return config_utils.create_model(config), variables, ks, config_utils.input_size(config)
  loaded = checkpoint.load_model(path, dtype=config.model.dtype, depthwise_impl=config.model.depthwise_impl)
  return loaded.model, loaded.variables, loaded.keypoint_set, size or loaded.model.arch.img_size


def decode_config(config, keypoint_set: kp_lib.KeypointSet) -> decode.DecodeConfig:
  """DecodeConfig from config.eval."""
  e = config.eval
  return decode.DecodeConfig.create(
      keypoint_set, max_people=e.max_people, nms_kernel=e.nms_kernel,
      detection_threshold=e.detection_threshold, tag_threshold=e.tag_threshold, adjust=e.adjust,
      refine=e.refine, tie_break=e.tie_break)


def make_predictor(config, model, variables, keypoint_set, input_size: int) -> inference.Predictor:
  """The test-time path with config.eval's settings (flip, scales, decoder, batch size)."""
  return inference.Predictor(model, variables, keypoint_set, input_size, flip=config.eval.flip_test,
                             scales=tuple(config.eval.scales),
                             decode_config=decode_config(config, keypoint_set),
                             batch_size=config.eval.batch_size)


def read_rgb(path: str) -> np.ndarray:
  """An image file as RGB uint8; raises naming the file when it cannot be read."""
  image = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
  if image is None:
    raise OSError(f'{path}: not a readable image')
  return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class JsonSplit:
  """A COCO-format keypoint json and its image folder (GT per image, image paths and sizes)."""

  def __init__(self, ann_file: str, image_dir: str, max_images: int = 0):
    try:
      with open(ann_file) as f:
        data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
      raise ValueError(f'{ann_file}: cannot read the annotation json ({e})') from None
    if not isinstance(data, dict) or 'images' not in data or 'annotations' not in data:
      raise ValueError(f'{ann_file}: not a COCO-format json (needs "images" and "annotations")')
    self.ann_file, self.data = str(ann_file), data
    images = sorted(data['images'], key=lambda im: im['id'])
    if max_images:
      images = images[:max_images]
    self.images = images
    self.paths = {im['id']: os.path.join(image_dir, im['file_name']) for im in images}
    for im in images:
      if 'height' not in im or 'width' not in im:
        raise ValueError(f'{ann_file}: image {im.get("id")} has no height/width')
    self.people: Dict[int, List[dict]] = {im['id']: [] for im in images}
    for a in data['annotations']:
      if a.get('image_id') in self.people:
        self.people[a['image_id']].append(a)

  def gt_keypoints(self, image_id: int) -> np.ndarray:
    """[G, K, 3] labelled GT joints of an image (all annotations with keypoints)."""
    kps = [np.reshape(a['keypoints'], (-1, 3)) for a in self.people.get(image_id, []) if a.get('keypoints')]
    return np.asarray(kps, np.float64) if kps else np.zeros((0, 0, 3))

  def batches(self, predictor: inference.Predictor, batch_size: int, workers: int = 2
              ) -> Iterator[Dict[str, Any]]:
    """Eval batches of equal input shape (reading and resizing run in `workers` threads)."""
    groups: Dict[tuple, List[dict]] = {}
    for im in self.images:
      groups.setdefault(predictor.input_shapes(im['height'], im['width']), []).append(im)
    chunks = [g[i:i + batch_size] for g in groups.values() for i in range(0, len(g), batch_size)]

    def load(im):
      image = read_rgb(self.paths[im['id']])
      if image.shape[:2] != (im['height'], im['width']):
        raise ValueError(f'{self.paths[im["id"]]}: size {image.shape[1]}x{image.shape[0]} differs from '
                         f'the json ({im["width"]}x{im["height"]})')
      return predictor.prepare(image)

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
      for chunk in chunks:
        prepared = list(pool.map(load, chunk))
        pad = batch_size - len(chunk)
        prepared += [prepared[-1]] * pad
        yield {'images': [np.stack([p[0][s] for p in prepared]) for s in range(len(prepared[0][0]))],
               'image_id': np.array([im['id'] for im in chunk] + [-1] * pad, np.int64),
               'center': np.stack([p[1] for p in prepared]), 'scale': np.stack([p[2] for p in prepared]),
               '_mask': np.arange(batch_size) < len(chunk)}


def image_quality(pred: np.ndarray, scores: np.ndarray, gt: np.ndarray, keypoint_set: kp_lib.KeypointSet
                  ) -> float:
  """Mean over GT people of the OKS with their greedily matched prediction (1 when there is no GT).

  Only ranks images for the worst-image PNGs (the metrics come from litepose_jax.evaluation). Object
  scale: the labelled joints' extent (w·h·0.53, CrowdPose's rule applied to the joint box).
  """
  gt = gt[(gt[..., 2] > 0).any(-1)] if len(gt) else gt
  if not len(gt):
    return 1.0
  if not len(pred):
    return 0.0
  pred = pred[np.argsort(-scores)[:20]]
  lab = gt[..., 2] > 0
  lo = np.where(lab[..., None], gt[..., :2], np.inf).min(1)
  hi = np.where(lab[..., None], gt[..., :2], -np.inf).max(1)
  area = np.maximum(np.prod(hi - lo, axis=-1) * 0.53, 1.0)
  var = (2 * keypoint_set.sigmas_array) ** 2
  d2 = np.sum((pred[:, None, :, :2] - gt[None, :, :, :2]) ** 2, axis=-1)  # [P,G,K]
  o = np.sum(np.exp(-d2 / var / area[None, :, None] / 2) * lab[None], -1) / lab.sum(-1)[None]
  total, used = 0.0, set()
  for p in range(len(pred)):
    free = [g for g in np.argsort(-o[p]) if g not in used]
    if free:
      used.add(free[0])
      total += o[p, free[0]]
  return total / len(gt)


def make_evaluator(gt, keypoint_set):
  """litepose_jax.evaluation.KeypointEvaluator (imported here: it is a separate part of the library)."""
  from litepose_jax import evaluation  # pylint: disable=g-import-not-at-top
  return evaluation.KeypointEvaluator(gt, keypoint_set)


def format_table(metrics: Dict[str, float]) -> str:
  from litepose_jax import evaluation  # pylint: disable=g-import-not-at-top
  return evaluation.format_table(metrics)


def run(predictor: inference.Predictor, batches: Iterable[Dict[str, Any]], evaluator, *,
        split: Optional[JsonSplit] = None, variables=None, num_worst: int = 0, total: Optional[int] = None,
        progress: bool = True) -> Tuple[Dict[str, float], List[tuple], Dict[str, float]]:
  """Runs the model over `batches`, feeding `evaluator`.

  Args:
    predictor: the test-time path; variables: weights to use instead of the predictor's own.
    batches: eval batches (module docstring).
    evaluator: has add(image_id, keypoints [P,K,3], scores [P]) and compute() -> {name: value}.
    split: the json split, for ranking images by `image_quality` (needs num_worst > 0).
    total: number of images, for the progress bar.
  Returns:
    (metrics, worst [(quality, image_id, keypoints, scores)] worst first, timing
    {'images', 'seconds', 'images_per_second'}).
  """
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  worst: List[tuple] = []  # max-heap on −quality keeps the num_worst lowest
  bar = tqdm(total=total, unit='img', disable=not progress, dynamic_ncols=True)
  count, start = 0, time.perf_counter()
  for batch in batches:
    inputs = batch['images'] if 'images' in batch else [batch['image']]
    kp, scores, valid = predictor.predict_prepared(inputs, batch['center'], batch['scale'], variables)
    for j in np.flatnonzero(batch['_mask']):
      image_id = int(batch['image_id'][j])
      keep = valid[j]
      evaluator.add(image_id, kp[j][keep], scores[j][keep])
      if split is not None and num_worst:
        q = image_quality(kp[j][keep], scores[j][keep], split.gt_keypoints(image_id), predictor.keypoint_set)
        item = (-q, image_id, kp[j][keep], scores[j][keep])
        if len(worst) < num_worst:
          heapq.heappush(worst, item)
        elif item[0] > worst[0][0]:
          heapq.heapreplace(worst, item)
      count += 1
      bar.update(1)
  bar.close()
  seconds = time.perf_counter() - start
  timing = {'images': count, 'seconds': seconds, 'images_per_second': count / max(seconds, 1e-9)}
  worst = sorted(((-q, i, k, s) for q, i, k, s in worst), key=lambda t: t[0])
  return evaluator.compute(), worst, timing


def write_worst(workdir: str, split: JsonSplit, worst: Sequence[tuple],
                keypoint_set: kp_lib.KeypointSet) -> List[str]:
  """PNGs of the worst images: prediction | ground truth. Returns the written paths."""
  out_dir = pathlib.Path(workdir) / 'worst_images'
  out_dir.mkdir(parents=True, exist_ok=True)
  written = []
  for rank, (quality, image_id, kp, scores) in enumerate(worst):
    image = read_rgb(split.paths[image_id])
    pred = visualize.draw_people(image, kp, keypoint_set.skeleton, scores)
    gt = visualize.draw_ground_truth(image, split.gt_keypoints(image_id), keypoint_set.skeleton)
    path = out_dir / f'{rank:02d}_{image_id}_oks{quality:.2f}.png'
    visualize.write_rgb(str(path), visualize.side_by_side(pred, gt))
    written.append(str(path))
  return written


def eval_split(config) -> JsonSplit:
  """The evaluation split: config.dataset.ann_file + image_dir (a COCO-format json and its images)."""
  ds = config.dataset
  if not ds.ann_file or not ds.image_dir:
    raise ValueError('evaluation reads a COCO-format json and its image folder: set '
                     '--config.dataset.ann_file and --config.dataset.image_dir')
  return JsonSplit(ds.ann_file, ds.image_dir, config.eval.max_images)


def evaluate(config, model, variables, keypoint_set: kp_lib.KeypointSet, input_size: int,
             workdir: Optional[str] = None, progress: bool = True, split: Optional[JsonSplit] = None
             ) -> Dict[str, float]:
  """Evaluates on config's eval split; writes results.json, metrics.json and worst-image PNGs to workdir.

  Args:
    split: the split to use (default: `eval_split(config)`).
  Returns:
    The metrics dict (AP, AP50, ...), plus 'images_per_second'.
  """
  split = split or eval_split(config)
  predictor = make_predictor(config, model, variables, keypoint_set, input_size)
  evaluator = make_evaluator(split.data, keypoint_set)
  num_worst = config.eval.num_worst_images if workdir else 0
  metrics, worst, timing = run(predictor, split.batches(predictor, config.eval.batch_size), evaluator,
                               split=split, num_worst=num_worst, total=len(split.images),
                               progress=progress)
  if workdir:
    os.makedirs(workdir, exist_ok=True)
    evaluator.write_results(os.path.join(workdir, 'results.json'))
    with open(os.path.join(workdir, 'metrics.json'), 'w') as f:
      json.dump({k: float(v) for k, v in metrics.items()}, f, indent=1)
    write_worst(workdir, split, worst, keypoint_set)
  return dict(metrics, images_per_second=timing['images_per_second'])
