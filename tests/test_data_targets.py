"""Training targets: parity with the authors' fixtures, an independent NumPy oracle of spec (b)/(d.1), and
the heatmap round trip.

The oracle below is written from the spec text only (affine from center/scale/rotation, exact bilinear
warp with zero border for the image and the mask, per-person/per-joint loops for heatmaps and tag
joints), not from our TF code.
"""

import math
import os

import cv2
import numpy as np
import pytest

from litepose_jax import keypoints as kp_lib
from litepose_jax.data import targets

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


def _grey(image_normalised):
  return (image_normalised * STD + MEAN) * 255.0


# ---------------------------------------------------------------------------------------------------------
# The authors' fixtures.

@pytest.mark.parametrize('name,folder', [('crowdpose', 'crowdpose_sample'), ('coco', 'coco_mini/val2017')])
def test_parity_with_authors_targets(reference_dir, data_dir, name, folder):
  z = np.load(reference_dir / f'targets_{name}.npz')
  cases = sorted({k.rsplit('/', 1)[0] for k in z.files if k.count('/') == 3})
  assert len(cases) >= 8
  worst = {'grey_max': 0.0, 'grey_mean': 0.0, 'heat': 0.0, 'mask': 0.0}
  for case in cases:
    image_id, size, _ = case.split('/')
    image = cv2.imread(os.path.join(data_dir, folder, str(z[f'{image_id}/file_name'])))[..., ::-1].copy()
    keep = z[f'{image_id}/mask_image']
    aug = dict(aug_scale=float(z[f'{case}/aug_scale']), rot=float(z[f'{case}/rot']), dx=int(z[f'{case}/dx']),
               dy=int(z[f'{case}/dy']), flip=bool(z[f'{case}/flip']))
    out = targets.make_train_example(image, z[f'{image_id}/joints_image'], 1 - keep, aug, int(size), name)
    grey = np.abs(_grey(out['image']) - z[f'{case}/image_warped'].astype(np.float64))
    worst['grey_max'] = max(worst['grey_max'], grey.max())
    worst['grey_mean'] = max(worst['grey_mean'], grey.mean())
    for s in range(2):
      heat = np.abs(out['heatmaps'][s].transpose(2, 0, 1) - z[f'{case}/heatmaps_{s}']).max()
      worst['heat'] = max(worst['heat'], heat)
      worst['mask'] = max(worst['mask'], (out['masks'][s] != z[f'{case}/masks_{s}']).mean())
      np.testing.assert_array_equal(out['joints'][s], z[f'{case}/joints_{s}'], err_msg=case)
  print(f'{name} parity over {len(cases)} cases: {worst}')
  assert worst['grey_max'] <= 2.0 and worst['grey_mean'] <= 0.05
  assert worst['heat'] <= 1e-4
  assert worst['mask'] <= 0.005


# ---------------------------------------------------------------------------------------------------------
# Independent NumPy oracle of spec (b) + (d.1).

def oracle_matrix(center, scale, res, rot_deg):
  """Spec d.1: x' = R/(200 s)·(x − c) + R/2, then the grid rotated by −r about (R/2, R/2)."""
  a = res / (200.0 * scale)
  t = np.array([[a, 0.0, res / 2 - a * center[0]], [0.0, a, res / 2 - a * center[1]]])
  th = math.radians(-rot_deg)
  r = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
  return np.concatenate([r @ t[:, :2], (r @ (t[:, 2] - res / 2) + res / 2)[:, None]], axis=1)


def bilinear_warp(image, mat, res):
  """Exact bilinear warpAffine with a zero border (what cv2.warpAffine approximates in fixed point)."""
  image = np.asarray(image, np.float64)
  if image.ndim == 2:
    image = image[..., None]
  inv = np.linalg.inv(np.vstack([mat, [0, 0, 1]]))[:2]
  ys, xs = np.mgrid[0:res, 0:res]
  sx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
  sy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
  x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
  out = np.zeros((res, res, image.shape[2]))
  for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
    x, y = x0 + dx, y0 + dy
    wgt = (1 - abs(sx - x)) * (1 - abs(sy - y))
    ok = (x >= 0) & (x < image.shape[1]) & (y >= 0) & (y < image.shape[0])
    out += (wgt * ok)[..., None] * image[np.clip(y, 0, image.shape[0] - 1), np.clip(x, 0, image.shape[1] - 1)]
  return out


def oracle_example(image, keypoints, keep, aug, size, ks, area, max_people=30):
  h, w = image.shape[:2]
  scale = min(h, w) / 200.0 * aug['aug_scale']
  center = (w / 2 + aug['dx'], h / 2 + aug['dy'])
  warped = np.round(bilinear_warp(image, oracle_matrix(center, scale, size, aug['rot']), size))
  if aug['flip']:
    warped = warped[:, ::-1]
  has = (keypoints[..., 2] > 0).any(-1)
  keep_people = sorted(sorted(range(len(keypoints)), key=lambda p: (not has[p], -area[p]))[:max_people])
  out = {'image': warped, 'heatmaps': [], 'masks': [], 'joints': []}
  g = np.exp(-((np.arange(15)[None] - 7) ** 2 + (np.arange(15)[:, None] - 7) ** 2) / 8.0)
  for res in (size // 4, size // 2):
    mat = oracle_matrix(center, scale, res, aug['rot'])
    mask = bilinear_warp(keep, mat, res)[..., 0] > 0.5
    pts = keypoints.copy()
    pts[..., :2] = keypoints[..., :2] @ mat[:, :2].T + mat[:, 2]
    if aug['flip']:
      mask = mask[:, ::-1]
      pts = pts[:, list(ks.flip_index)]
      pts[..., 0] = res - 1 - pts[..., 0]
    heat = np.zeros((ks.num_keypoints, res, res))
    tags = np.zeros((max_people, ks.num_keypoints, 2), np.int64)
    for p, person in enumerate(pts):
      slot = 0
      for k, (x, y, v) in enumerate(person):
        xi, yi = int(x), int(y)
        if v <= 0 or not (0 <= xi < res and 0 <= yi < res):
          continue
        for dy in range(-7, 8):
          for dx in range(-7, 8):
            if 0 <= yi + dy < res and 0 <= xi + dx < res:
              heat[k, yi + dy, xi + dx] = max(heat[k, yi + dy, xi + dx], g[dy + 7, dx + 7])
        if p in keep_people:
          tags[keep_people.index(p), slot] = (k * res * res + yi * res + xi, 1)
          slot += 1
    out['heatmaps'].append(heat.transpose(1, 2, 0))
    out['masks'].append(mask.astype(np.float32))
    out['joints'].append(tags)
  return out


def _random_case(rng, num_people, ks, h=301, w=417):
  image = cv2.resize(rng.integers(0, 256, (9, 13, 3)).astype(np.uint8), (w, h),
                     interpolation=cv2.INTER_CUBIC)
  image = np.clip(image.astype(int) + rng.integers(-20, 20, image.shape), 0, 255).astype(np.uint8)
  kps = np.zeros((num_people, ks.num_keypoints, 3))
  kps[..., 0] = rng.uniform(-30, w + 30, kps.shape[:2])
  kps[..., 1] = rng.uniform(-30, h + 30, kps.shape[:2])
  kps[..., 2] = rng.choice([0, 1, 2], kps.shape[:2], p=[0.25, 0.25, 0.5])
  kps[kps[..., 2] == 0] = 0.0
  ignore = np.zeros((h, w), np.uint8)
  ignore[rng.integers(0, h // 2):rng.integers(h // 2, h), rng.integers(0, w // 2):rng.integers(w // 2, w)] = 1
  area = rng.uniform(10, 5000, num_people)
  aug = dict(aug_scale=rng.uniform(0.75, 1.5), rot=rng.uniform(-30, 30), dx=int(rng.integers(-60, 60)),
             dy=int(rng.integers(-60, 60)), flip=bool(rng.random() < 0.5))
  return image, kps, ignore, area, aug


@pytest.mark.parametrize('seed,num_people,name', [(0, 3, 'crowdpose'), (1, 34, 'coco'), (2, 0, 'crowdpose')])
def test_matches_numpy_oracle(seed, num_people, name):
  rng = np.random.default_rng(seed)
  ks = kp_lib.get(name)
  image, kps, ignore, area, aug = _random_case(rng, num_people, ks)
  size = 256
  ours = targets.make_train_example(image, kps, ignore, aug, size, name, area=area)
  ref = oracle_example(image, kps, 1 - ignore, aug, size, ks, area)
  # Both sides round to grey levels; float32 vs float64 sampling positions may flip a rounding at .5.
  grey = np.abs(_grey(ours['image']) - ref['image'])
  assert grey.max() <= 1.0 + 1e-3 and grey.mean() <= 0.01, (grey.max(), grey.mean())
  for s in range(2):
    np.testing.assert_allclose(ours['heatmaps'][s], ref['heatmaps'][s], atol=1e-6)
    np.testing.assert_array_equal(ours['joints'][s], ref['joints'][s])
    assert (ours['masks'][s] != ref['masks'][s]).mean() <= 0.005
  if num_people > 30:  # more people than tag slots: every person still has its heatmaps
    assert ours['joints'][0][:, :, 1].sum() < sum((k[:, 2] > 0).sum() for k in kps)


def test_heatmap_round_trip_argmax():
  """keypoints → heatmaps → per-joint argmax recovers every visible in-grid joint within 1 output px."""
  rng = np.random.default_rng(5)
  ks = kp_lib.get('coco')
  image = np.zeros((360, 480, 3), np.uint8)
  checked = 0
  for trial in range(4):
    kps = np.zeros((1, ks.num_keypoints, 3))
    kps[0, :, 0] = rng.uniform(0, 480, ks.num_keypoints)
    kps[0, :, 1] = rng.uniform(0, 360, ks.num_keypoints)
    kps[0, :, 2] = 2
    aug = dict(aug_scale=rng.uniform(0.75, 1.5), rot=rng.uniform(-30, 30), dx=int(rng.integers(-40, 40)),
               dy=int(rng.integers(-40, 40)), flip=trial % 2 == 1)
    out = targets.make_train_example(image, kps, None, aug, 256, 'coco')
    for s, res in enumerate((64, 128)):
      scale = min(360, 480) / 200.0 * aug['aug_scale']
      mat = oracle_matrix((240 + aug['dx'], 180 + aug['dy']), scale, res, aug['rot'])
      pts = kps[0, :, :2] @ mat[:, :2].T + mat[:, 2]
      order = list(ks.flip_index) if aug['flip'] else list(range(ks.num_keypoints))
      if aug['flip']:
        pts = pts[order]
        pts[:, 0] = res - 1 - pts[:, 0]
      heat = out['heatmaps'][s]
      for k in range(ks.num_keypoints):
        x, y = pts[k]
        if not (0 <= x < res and 0 <= y < res):
          continue
        yy, xx = np.unravel_index(np.argmax(heat[..., k]), heat.shape[:2])
        assert abs(xx - x) <= 1 and abs(yy - y) <= 1, (trial, s, k, (xx, yy), (x, y))
        checked += 1
  assert checked > 60


def test_make_train_example_rejects_bad_arguments():
  image = np.zeros((40, 50, 3), np.uint8)
  kps = np.zeros((1, 14, 3))
  aug = dict(aug_scale=1.0, rot=0.0, dx=0, dy=0, flip=False)
  with pytest.raises(ValueError, match='uint8'):
    targets.make_train_example(image.astype(np.float32), kps, None, aug, 64, 'crowdpose')
  with pytest.raises(ValueError, match='ignore_mask'):
    targets.make_train_example(image, kps, np.zeros((10, 10)), aug, 64, 'crowdpose')
  with pytest.raises(ValueError):
    targets.make_train_example(image, np.zeros((1, 17, 3)), None, aug, 64, 'crowdpose')


def test_large_heatmap_batch_matches_numpy_oracle():
  """A training-sized batch (more valid joints than the smallest window bucket, joints on and off the
  grid edges, zero-padded people) gives the same maps as spec (b)'s per-window max."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(7)
  b, p, k, res = 24, 4, 17, 128
  kps = np.zeros((b, p, k, 3))
  kps[..., :2] = rng.uniform(-10, res + 10, (b, p, k, 2))
  kps[:, 0, :3, :2] = rng.uniform(-0.99, 0.0, (b, 3, 2))  # int() truncates toward zero: still in the grid
  kps[..., 2] = rng.choice([0, 1, 2], (b, p, k), p=[0.2, 0.3, 0.5])
  kps[::3, -1] = 0.0  # zero-padded people, as padded_batch leaves them
  ours = targets.heatmaps(tf.constant(kps), res, k).numpy()
  g = np.exp(-((np.arange(15)[None] - 7) ** 2 + (np.arange(15)[:, None] - 7) ** 2) / 8.0)
  want = np.zeros((b, res, res, k))
  for i, j, q in zip(*np.nonzero(kps[..., 2] > 0)):
    xi, yi = int(kps[i, j, q, 0]), int(kps[i, j, q, 1])
    if not (0 <= xi < res and 0 <= yi < res):
      continue
    y0, y1, x0, x1 = max(0, yi - 7), min(res, yi + 8), max(0, xi - 7), min(res, xi + 8)
    want[i, y0:y1, x0:x1, q] = np.maximum(want[i, y0:y1, x0:x1, q],
                                          g[y0 - yi + 7:y1 - yi + 7, x0 - xi + 7:x1 - xi + 7])
  np.testing.assert_allclose(ours, want, atol=1e-6)
  assert (want > 0).any(axis=(1, 2)).sum() > b * k // 2  # the case is not vacuous


def test_supervising_outside_the_image_keeps_only_ignore_regions_masked():
  """mask_outside=False: a zoomed-out, rotated crop keeps every grid pixel without ignore regions; with
  regions, the masked pixels are the oracle's masked pixels inside the image (ignored) and none outside."""
  rng = np.random.default_rng(5)
  ks = kp_lib.get('coco')
  image, kps, ignore, area, _ = _random_case(rng, 3, ks)
  aug = dict(aug_scale=1.5, rot=25.0, dx=30, dy=-20, flip=True)  # black border on every side
  authors = targets.make_train_example(image, kps, None, aug, 256, 'coco', area=area)
  assert all(m.mean() < 0.9 for m in authors['masks'])  # the authors' rule drops the border
  free = targets.make_train_example(image, kps, None, aug, 256, 'coco', area=area, mask_outside=False)
  assert all(m.min() == 1.0 for m in free['masks'])
  regions = targets.make_train_example(image, kps, ignore, aug, 256, 'coco', area=area, mask_outside=False)
  ref_inside = oracle_example(image, kps, np.ones_like(ignore), aug, 256, ks, area)['masks']
  ref_keep = oracle_example(image, kps, 1 - ignore, aug, 256, ks, area)['masks']
  for s in range(2):
    ignored = (ref_inside[s] == 1) & (ref_keep[s] == 0)  # inside the image and in a region
    assert ignored.sum() > 50
    assert (regions['masks'][s] != (~ignored).astype(np.float32)).mean() <= 0.005
    np.testing.assert_array_equal(regions['heatmaps'][s], free['heatmaps'][s])


# ---------------------------------------------------------------------------------------------------------
# Ignore-region lookups (resample.rle_lookup, keep_masks): exact against dense masks.

def _random_region_masks(rng, shapes):
  """Dense ignore masks with rectangles and discs, some touching the top/bottom rows (their runs cross
  column boundaries), and one image without regions."""
  masks = []
  for i, (h, w) in enumerate(shapes):
    m = np.zeros((h, w), np.uint8)
    if i != 1:
      for _ in range(rng.integers(1, 4)):
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        if rng.random() < 0.5:
          m[max(0, y0 - 40) if rng.random() < 0.5 else 0:y0 + 1, x0:x0 + rng.integers(1, 60)] = 1
        else:
          yy, xx = np.mgrid[:h, :w]
          m[(yy - y0) ** 2 + (xx - x0) ** 2 <= rng.integers(4, 900)] = 1
    m[-1, -1] = 1 if i == 2 else m[-1, -1]  # a region ending on the last pixel
    if i == len(shapes) - 1:  # only one run, from the bottom of column x into the top of column x+1
      m[:] = 0
      x0 = rng.integers(0, w - 1)
      m[rng.integers(h // 2, h):, x0] = 1
      m[:rng.integers(1, h // 2), x0 + 1] = 1
    masks.append(m)
  return masks


def _padded_counts(masks):
  from litepose_jax.data import ignore_regions  # pylint: disable=g-import-not-at-top
  rles = [ignore_regions.rle_from_mask(m) if m.any() else np.zeros([0], np.int32) for m in masks]
  counts = np.zeros((len(rles), max(len(r) for r in rles)), np.int32)
  for i, r in enumerate(rles):
    counts[i, :len(r)] = r
  return counts


def test_ignored_pixels_equal_dense_masks():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from litepose_jax.data import resample  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(11)
  shapes = [(120, 90), (64, 64), (100, 140), (77, 51), (60, 40)]
  masks = _random_region_masks(rng, shapes)
  counts = _padded_counts(masks)
  n = 5000
  xs = np.stack([rng.integers(0, w, n) for h, w in shapes]).astype(np.int32)
  ys = np.stack([rng.integers(0, h, n) for h, w in shapes]).astype(np.int32)
  got = resample.ignored_pixels(tf.constant(counts), tf.constant(shapes), tf.constant(xs),
                                tf.constant(ys)).numpy()
  want = np.stack([m[y, x] > 0 for m, x, y in zip(masks, xs, ys)])
  assert want.sum() > 200 and not want[1].any()
  np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize('flip', [False, True])
def test_masks_of_coarse_grids_equal_their_own_lookup(flip):
  """keep_masks looks regions up on the finest grid and subsamples it for the coarser ones: the result
  must be identical to looking each grid up on its own (rotated, shifted, zoomed crops)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from litepose_jax.data import geometry, resample  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(3 + flip)
  shapes = [(480, 640), (300, 300), (427, 640), (640, 480), (400, 300)]
  masks = _random_region_masks(rng, shapes)
  counts = tf.constant(_padded_counts(masks))
  hw = tf.constant(shapes, tf.int32)
  b = len(shapes)
  aug = {'scale': tf.constant(rng.uniform(0.75, 1.5, b)), 'rot': tf.constant(rng.uniform(-30, 30, b)),
         'dx': tf.constant(rng.integers(-40, 40, b), tf.int32),
         'dy': tf.constant(rng.integers(-40, 40, b), tf.int32)}
  sizes = (64, 128)
  mats = geometry.train_matrices(hw[:, 0], hw[:, 1], aug, sizes)
  flips = tf.constant([flip, not flip, flip, flip, flip])
  both = resample.keep_masks(counts, hw, mats, sizes, flips)
  for s, res in enumerate(sizes):
    alone, = resample.keep_masks(counts, hw, [mats[s]], [res], flips)
    assert (both[s].numpy() == 0).mean() > 0.01
    np.testing.assert_array_equal(both[s].numpy(), alone.numpy())
