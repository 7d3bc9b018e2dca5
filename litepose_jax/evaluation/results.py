"""COCO keypoint results: validation, conversion between result dicts and arrays, and the json writer.

A result (one per detected person) is `{image_id, category_id, keypoints: [x, y, v] * K, score, bbox}`;
`bbox` is the keypoint extent [x0, y0, x1 - x0, y1 - y0] over all K joints, the box (and area) that
pycocotools' `loadRes` recomputes for keypoint results anyway.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Iterable, List, Sequence, Tuple, Union

import numpy as np

from litepose_jax.data import coco_format

ResultsSource = Union[str, os.PathLike, Sequence[Dict[str, Any]]]


def keypoint_extent(keypoints: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """Box and area of each person's joints, as pycocotools `loadRes` computes them.

  Args:
    keypoints: [P, K, 2+] joint coordinates (x, y, ...); every joint counts, labelled or not.

  Returns:
    bbox: [P, 4] (x0, y0, w, h).
    area: [P] w·h.
  """
  x, y = keypoints[..., 0], keypoints[..., 1]
  if not x.shape[0]:
    return np.zeros((0, 4)), np.zeros((0,))
  x0, x1, y0, y1 = x.min(-1), x.max(-1), y.min(-1), y.max(-1)
  return np.stack([x0, y0, x1 - x0, y1 - y0], -1), (x1 - x0) * (y1 - y0)


def read_results(path: Union[str, os.PathLike]) -> List[Dict[str, Any]]:
  """Loads a COCO results json (a list of result dicts)."""
  path = os.fspath(path)
  results = coco_format.read_json(path, what='results file')
  if not isinstance(results, list):
    raise ValueError(f'{path}: a results file must hold a json list of result dicts')
  return results


def results_to_arrays(results: Iterable[Dict[str, Any]], num_keypoints: int, category_id: int,
                      source: str = '<results>') -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Validates result dicts and stacks them (P results, K joints).

  Args:
    results: COCO result dicts; 'category_id' may be left out (it then defaults to `category_id`).
    num_keypoints: K of the ground truth.
    category_id: the evaluated (person) category.
    source: name used in error messages.

  Returns:
    image_ids [P] int64, keypoints [P, K, 3] float64, scores [P] float64.

  Raises:
    ValueError: a result is malformed (the message names its index and the problem).
  """
  results = list(results)
  # Cheap per-result checks in Python, then one conversion of everything.
  for n, r in enumerate(results):
    where = f'{source}: result #{n}'
    if not isinstance(r, dict):
      raise ValueError(f'{where}: expected a dict, got {type(r).__name__}')
    for key in ('image_id', 'keypoints', 'score'):
      if key not in r:
        raise ValueError(f'{where}: missing "{key}"')
    if r.get('category_id', category_id) != category_id:
      raise ValueError(f'{where}: category_id {r["category_id"]!r}, but the ground truth evaluates '
                       f'category {category_id}')
    if len(r['keypoints']) != 3 * num_keypoints:
      raise ValueError(f'{where}: "keypoints" has {len(r["keypoints"])} values, expected '
                       f'{3 * num_keypoints} ({num_keypoints} joints x (x, y, v))')
  try:
    ids = np.array([int(r['image_id']) for r in results], np.int64)
    keypoints = np.array([r['keypoints'] for r in results], np.float64)
    scores = np.array([r['score'] for r in results], np.float64)
  except (TypeError, ValueError) as e:
    raise ValueError(f'{source}: image_id, keypoints and score must be numbers: {e}') from None
  keypoints = keypoints.reshape(len(results), num_keypoints, 3)
  bad = ~(np.isfinite(keypoints).all((1, 2)) & np.isfinite(scores))
  if bad.any():
    raise ValueError(f'{source}: result #{int(np.argmax(bad))} has non-finite keypoints or score')
  return ids, keypoints, scores


def arrays_to_results(image_ids: np.ndarray, keypoints: np.ndarray, scores: np.ndarray,
                      category_id: int = 1) -> List[Dict[str, Any]]:
  """COCO result dicts for P people.

  Args:
    image_ids: [P] ints.
    keypoints: [P, K, 3] (x, y, v) in original-image pixels.
    scores: [P] person scores.
    category_id: written into every result.

  Returns:
    P dicts {image_id, category_id, keypoints (3K floats), score, bbox (keypoint extent)}. Floats are the
    float64 values themselves, so a json written from them evaluates exactly like the arrays.
  """
  keypoints = np.asarray(keypoints, np.float64)
  bbox, _ = keypoint_extent(keypoints)
  flat = keypoints.reshape(len(keypoints), keypoints[0].size if len(keypoints) else 0).tolist()
  return [{'image_id': i, 'category_id': category_id, 'keypoints': k, 'score': s, 'bbox': b}
          for i, k, s, b in zip(np.asarray(image_ids).tolist(), flat,
                                np.asarray(scores, np.float64).tolist(), bbox.tolist())]


def write_results(path: Union[str, os.PathLike], results: Sequence[Dict[str, Any]]) -> None:
  """Writes result dicts as a COCO results json (creating the parent folder)."""
  path = os.fspath(path)
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  with open(path, 'w') as f:
    json.dump(list(results), f)
