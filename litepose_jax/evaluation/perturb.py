"""Ground truth turned into imperfect detections: a known-answer input for checking and timing evaluators.

Every situation the matcher has to get right shows up: jittered people at several noise levels, joints
dropped to random places, missed people, duplicates competing for one GT, detections on crowd regions and
on people without keypoints, false positives, more than max_dets detections in some images, and score ties
(within and across images).
"""

from __future__ import annotations

from typing import Any, Dict, List

import numpy as np


def perturbed_results(dataset: Dict[str, Any], seed: int = 0, num_keypoints: int = 0,
                      crowded_image_fraction: float = 0.03) -> List[Dict[str, Any]]:
  """COCO result dicts derived from a COCO-format GT dict with a fixed seed.

  Args:
    dataset: parsed GT json (images with width/height, annotations with keypoints and bbox).
    seed: NumPy random seed.
    num_keypoints: K; default: from the first annotation.
    crowded_image_fraction: share of images that get 25 extra random detections (beyond maxDets = 20).

  Returns:
    Result dicts {image_id, category_id, keypoints (3K floats), score}.
  """
  rng = np.random.default_rng(seed)
  k = num_keypoints or len(dataset['annotations'][0]['keypoints']) // 3
  cat = dataset['annotations'][0].get('category_id', 1)
  sizes = {im['id']: (float(im.get('width', 640)), float(im.get('height', 480)))
           for im in dataset['images']}
  out = []

  def score(quality):
    # Half the scores follow the detection's quality (so AP is not just chance), half are random.
    s = float(np.clip(quality + rng.normal(0, 0.15), 0, 1)) if rng.random() < 0.5 else rng.random()
    return round(s, 1) if rng.random() < 0.3 else s  # rounded scores tie, within and across images

  def emit(image_id, xy, s):
    v = rng.uniform(0.05, 1.0, size=(k, 1))
    out.append({'image_id': image_id, 'category_id': cat,
                'keypoints': np.concatenate([xy, v], 1).reshape(-1).tolist(), 'score': s})

  def random_person(image_id):
    w, h = sizes[image_id]
    bw, bh = rng.uniform(10, w / 2), rng.uniform(10, h / 2)
    x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
    return np.stack([rng.uniform(x0, x0 + bw, k), rng.uniform(y0, y0 + bh, k)], 1)

  for ann in dataset['annotations']:
    if rng.random() < 0.1:  # missed person
      continue
    x, y, bw, bh = (float(t) for t in ann['bbox'])
    gt = np.asarray(ann['keypoints'], np.float64).reshape(k, 3)
    unlabelled = gt[:, 2] <= 0
    xy = gt[:, :2].copy()
    xy[unlabelled] = np.stack([rng.uniform(x, x + max(bw, 1), k), rng.uniform(y, y + max(bh, 1), k)],
                              1)[unlabelled]
    scale = np.sqrt(max(bw * bh, 1.0))
    for copy_noise in ([rng.choice([0.005, 0.02, 0.05, 0.1, 0.3])] +
                       ([0.15] if rng.random() < 0.15 else [])):  # sometimes a worse duplicate
      noisy = xy + rng.normal(0, copy_noise * scale, size=(k, 2))
      dropped = rng.random(k) < 0.1
      noisy[dropped] = random_person(ann['image_id'])[dropped]
      emit(ann['image_id'], noisy, score(1 - copy_noise * 3))

  for image_id in sizes:
    extra = 25 if rng.random() < crowded_image_fraction else int(rng.integers(0, 4))
    for _ in range(extra):
      emit(image_id, random_person(image_id), score(0.2))
  order = rng.permutation(len(out))  # results arrive in no particular order
  return [out[i] for i in order]
