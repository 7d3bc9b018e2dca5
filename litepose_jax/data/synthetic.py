"""A deterministic synthetic multi-person keypoint dataset: articulated stick figures on textured backgrounds.

Every image holds 1-8 people drawn with the keypoint set's skeleton as limbs of varying thickness (plus a
torso and a head), at varied scales and poses, overlapping and partly outside the frame. Labels follow COCO:
joints outside the image are (0, 0, 0); joints covered by a person drawn later or by an occluder are either
labelled v=1 or left unlabelled; the rest are v=2. Image n of a split depends only on (seed, split, n).
The set is written once as COCO json + JPEGs under <data_dir>/synthetic/ and then read like any
'coco_json' dataset; it is the embedded default for the demo and the tests (generated in seconds, once).

Config keys (configs/common.py): dataset.synthetic_train_images (default 512),
dataset.synthetic_val_images (64), dataset.synthetic_seed (0), dataset.synthetic_max_people (8) and
dataset.synthetic_min_torso (0.12: the smallest torso length as a fraction of the image's short side;
the largest is 0.4). The demo uses fewer, larger people so that a CPU learns them in minutes.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from typing import Optional

import cv2
import numpy as np

from litepose_jax import keypoints as kp_lib

VERSION = 2  # 2: joints drawn as darker discs (v1 figures gave no visual cue where an elbow was)

# Rest pose in a body frame (x to the image right for a person facing the camera, y down, unit = torso
# length), as (parent, offset from the parent, how much the bone may bend in degrees).
_BONES = {
    'neck': ('pelvis', (0.0, -1.0), 10),
    'head': ('neck', (0.0, -0.55), 20),
    'nose': ('neck', (0.0, -0.35), 20),
    'left_eye': ('nose', (0.07, -0.07), 0),
    'right_eye': ('nose', (-0.07, -0.07), 0),
    'left_ear': ('nose', (0.15, -0.02), 0),
    'right_ear': ('nose', (-0.15, -0.02), 0),
    'left_shoulder': ('neck', (0.28, 0.05), 5),
    'right_shoulder': ('neck', (-0.28, 0.05), 5),
    'left_elbow': ('left_shoulder', (0.05, 0.45), 80),
    'right_elbow': ('right_shoulder', (-0.05, 0.45), 80),
    'left_wrist': ('left_elbow', (0.0, 0.42), 70),
    'right_wrist': ('right_elbow', (0.0, 0.42), 70),
    'left_hip': ('pelvis', (0.17, 0.0), 5),
    'right_hip': ('pelvis', (-0.17, 0.0), 5),
    'left_knee': ('left_hip', (0.02, 0.5), 35),
    'right_knee': ('right_hip', (-0.02, 0.5), 35),
    'left_ankle': ('left_knee', (0.0, 0.5), 30),
    'right_ankle': ('right_knee', (0.0, 0.5), 30),
}


def _pose(rng: np.random.Generator) -> dict:
  """Random articulated pose: body-frame positions of every joint in _BONES (pelvis at the origin)."""
  angle = {'pelvis': rng.normal(0.0, 0.25)}
  pos = {'pelvis': np.zeros(2)}
  # Turning sideways narrows the shoulders and hips. Figures always face the camera: a stick figure seen
  # from the back would look the same with left and right swapped, which no model could learn.
  squash = rng.uniform(0.35, 1.0)
  for name, (parent, offset, bend) in _BONES.items():
    angle[name] = angle[parent] + math.radians(rng.uniform(-bend, bend))
    off = np.array(offset) * np.array([squash if bend <= 5 else 1.0, 1.0])
    c, s = math.cos(angle[name]), math.sin(angle[name])
    pos[name] = pos[parent] + np.array([c * off[0] - s * off[1], s * off[0] + c * off[1]])
  return pos


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
  """Textured background: coloured low-frequency noise, a few lines and a tiled fine grain."""
  small = rng.uniform(0, 255, size=(rng.integers(2, 7), rng.integers(2, 7), 3)).astype(np.float32)
  img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
  for _ in range(rng.integers(0, 6)):
    p1 = tuple(int(v) for v in rng.integers(0, [w, h]))
    p2 = tuple(int(v) for v in rng.integers(0, [w, h]))
    cv2.line(img, p1, p2, tuple(float(v) for v in rng.uniform(0, 255, 3)), int(rng.integers(1, 6)))
  # A 64×64 grain tile repeated over the image: as good a texture as full-size noise, 30× cheaper.
  tile = rng.standard_normal((64, 64, 3), dtype=np.float32) * np.float32(rng.uniform(2, 12))
  img += np.tile(tile, (h // 64 + 1, w // 64 + 1, 1))[:h, :w]
  return img


def _draw_person(img, label, index, joints_xy, keypoint_set, names, thickness, colour, head_radius):
  """Draws one figure into `img` and writes `index` into `label` where it is drawn."""
  pts = {n: tuple(int(round(v)) for v in joints_xy[n]) for n in names}
  torso = [n for n in ('left_shoulder', 'right_shoulder', 'right_hip', 'left_hip') if n in pts]
  layers = [(img, colour), (label, index)]
  for target, value in layers:
    if len(torso) == 4:
      cv2.fillConvexPoly(target, np.array([pts[n] for n in torso], np.int32), value)
    for a, b in keypoint_set.skeleton:
      cv2.line(target, pts[names[a]], pts[names[b]], value, thickness, cv2.LINE_AA if target is img else 8)
    head = pts.get('head', pts.get('nose'))
    if head is not None:
      cv2.circle(target, head, head_radius, value, -1)
  # Joints as darker discs on top: on a uniformly coloured limb an elbow or a knee would otherwise be
  # visible only when the limb bends, and no model could place it on a straight one.
  joint_colour = tuple(0.45 * v for v in colour)
  for n in names:
    if n not in ('head', 'nose'):
      cv2.circle(img, pts[n], max(1, (thickness + 1) // 2), joint_colour, -1, cv2.LINE_AA)


def render_image(n: int, keypoint_set: kp_lib.KeypointSet, seed: int, split: str, max_people: int = 8,
                 min_torso: float = 0.12):
  """Image n of a split: 1..max_people people, torso length in [min_torso, 0.4] x the short side.

  Returns:
    (image [H,W,3] uint8 BGR, annotations: list of dicts with 'keypoints' [K,3], 'bbox', 'area').
  """
  rng = np.random.default_rng([seed, {'train': 0, 'val': 1}.get(split, 2), n])
  h, w = int(rng.integers(224, 353)), int(rng.integers(256, 401))
  img = _background(rng, h, w)
  label = np.full((h, w), -1, np.int16)
  names = keypoint_set.joint_names
  missing = [nm for nm in names if nm not in _BONES]
  if missing:
    raise ValueError(f'synthetic data has no template for joints {missing} of {keypoint_set.name!r}')
  people = []
  for _ in range(int(rng.integers(1, max_people + 1))):
    unit = math.exp(rng.uniform(math.log(min_torso), math.log(0.4))) * min(h, w)  # torso length in px
    centre = rng.uniform([-0.1 * w, -0.1 * h], [1.1 * w, 1.1 * h])
    pose = _pose(rng)
    people.append({nm: centre + unit * pose[nm] for nm in names} | {'_unit': unit})
  people.sort(key=lambda p: p['_unit'])  # far (small) people first, near ones drawn over them
  for i, p in enumerate(people):
    colour = tuple(float(v) for v in rng.uniform(0, 255, 3))
    _draw_person(img, label, i, p, keypoint_set, names, max(1, int(p['_unit'] * rng.uniform(0.08, 0.2))),
                 colour, max(2, int(p['_unit'] * 0.18)))
  occluded = np.zeros((h, w), bool)
  for _ in range(int(rng.integers(0, 3))):  # occluders that cover people, not labelled as anything
    x0, y0 = rng.integers(0, [w, h])
    ww, hh = rng.integers(10, [w // 3 + 11, h // 3 + 11])
    cv2.rectangle(img, (int(x0), int(y0)), (int(x0 + ww), int(y0 + hh)),
                  tuple(float(v) for v in rng.uniform(0, 255, 3)), -1)
    occluded[y0:y0 + hh, x0:x0 + ww] = True
  anns = []
  for i, p in enumerate(people):
    own = (label == i) & ~occluded
    area = int(own.sum())
    if area < 20:
      continue  # nothing of this person is visible
    kps = np.zeros((len(names), 3))
    for j, nm in enumerate(names):
      x, y = p[nm]
      xi, yi = int(x), int(y)
      if not (0 <= x < w and 0 <= y < h):
        continue  # outside the image: unlabelled, as COCO
      if label[yi, xi] == i and not occluded[yi, xi]:
        kps[j] = (round(x, 2), round(y, 2), 2)
      elif rng.random() < 0.6:
        kps[j] = (round(x, 2), round(y, 2), 1)  # occluded but labelled
    ys, xs = np.flatnonzero(own.any(1)), np.flatnonzero(own.any(0))
    bbox = [float(xs[0]), float(ys[0]), float(xs[-1] - xs[0] + 1), float(ys[-1] - ys[0] + 1)]
    anns.append({'keypoints': kps, 'bbox': bbox, 'area': area})
  return np.clip(img, 0, 255).astype(np.uint8), anns


def _crowd_index(anns: list) -> float:
  """CrowdPose's crowd index: mean over people of (others' joints in my box) / (my joints in my box)."""
  ratios = []
  for i, a in enumerate(anns):
    x, y, bw, bh = a['bbox']

    def inside(kps):
      lab = kps[:, 2] > 0
      return int((lab & (kps[:, 0] >= x) & (kps[:, 0] <= x + bw) & (kps[:, 1] >= y)
                  & (kps[:, 1] <= y + bh)).sum())
    own = inside(a['keypoints'])
    if own:
      ratios.append(sum(inside(b['keypoints']) for j, b in enumerate(anns) if j != i) / own)
  return float(np.mean(ratios)) if ratios else 0.0


def generate(out_dir: str, split: str, num_images: int, keypoint_set: kp_lib.KeypointSet | str,
             seed: int = 0, max_people: int = 8, min_torso: float = 0.12) -> str:
  """Writes `num_images` images to out_dir/<split>/ and their COCO json to out_dir/<split>.json.

  Returns:
    The json path.
  """
  keypoint_set = kp_lib.get(keypoint_set)
  image_dir = os.path.join(out_dir, split)
  os.makedirs(image_dir, exist_ok=True)
  images, annotations = [], []
  for n in range(num_images):
    img, anns = render_image(n, keypoint_set, seed, split, max_people, min_torso)
    image_id = n + 1
    file_name = f'{image_id:06d}.jpg'
    cv2.imwrite(os.path.join(image_dir, file_name), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    images.append({'id': image_id, 'file_name': file_name, 'height': img.shape[0], 'width': img.shape[1],
                   'crowdIndex': round(_crowd_index(anns), 3)})
    for a in anns:
      kps = a['keypoints']
      annotations.append({
          'id': len(annotations) + 1, 'image_id': image_id, 'category_id': 1, 'iscrowd': 0,
          'keypoints': [float(v) if v % 1 else int(v) for v in kps.reshape(-1)],
          'num_keypoints': int((kps[:, 2] > 0).sum()), 'bbox': a['bbox'], 'area': a['area']})
  category = {'id': 1, 'name': 'person', 'supercategory': 'person',
              'keypoints': list(keypoint_set.joint_names),
              'skeleton': [[a + 1, b + 1] for a, b in keypoint_set.skeleton]}
  ann_file = os.path.join(out_dir, f'{split}.json')
  with open(ann_file, 'w') as f:
    json.dump({'info': {'description': f'litepose_jax synthetic v{VERSION}', 'seed': seed},
               'images': images, 'annotations': annotations, 'categories': [category]}, f)
  return ann_file


def ensure(config, split: str, data_dir: Optional[str] = None) -> tuple[str, str]:
  """The (json, image folder) of a synthetic split, generating and caching it on first use.

  The cache folder name holds every parameter, so a changed config never reads stale data; it is written
  to a temporary folder and renamed, so concurrent processes never see a half-written set.
  """
  ds = config.dataset
  keypoint_set = kp_lib.get(ds.keypoints)
  num = int(ds.synthetic_train_images if split == 'train' else ds.synthetic_val_images)
  seed = int(ds.synthetic_seed)
  max_people = int(ds.synthetic_max_people)
  min_torso = float(ds.synthetic_min_torso)
  if not 1 <= max_people or not 0 < min_torso <= 0.4:
    raise ValueError(f'synthetic_max_people={max_people} must be >= 1 and synthetic_min_torso={min_torso} '
                     'in (0, 0.4]')
  root = os.path.join(data_dir or ds.data_dir, 'synthetic')
  shape = '' if (max_people, min_torso) == (8, 0.12) else f'-people{max_people}-torso{min_torso:g}'
  final = os.path.join(root, f'{keypoint_set.name}-v{VERSION}-seed{seed}{shape}-{split}{num}')
  ann_file = os.path.join(final, f'{split}.json')
  if not os.path.exists(ann_file):
    os.makedirs(root, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='.tmp-', dir=root)
    try:
      generate(tmp, split, num, keypoint_set, seed, max_people, min_torso)
      try:
        os.rename(tmp, final)
      except OSError:  # another process finished first
        pass
    finally:
      if os.path.exists(tmp):
        shutil.rmtree(tmp, ignore_errors=True)
  return ann_file, os.path.join(final, split)
