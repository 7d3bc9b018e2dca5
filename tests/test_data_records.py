"""Records and the COCO-format reader: every kind of bad input gets handled or a clear error naming the
file and the id; skip_bad_samples counts; ignore regions equal pycocotools' rasterisation."""

import json
import os
import shutil

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from litepose_jax.data import ignore_regions
from litepose_jax.data import image_files
from litepose_jax.data import records
from litepose_jax.data import transforms

CROWDPOSE_JSON = 'crowdpose_sample/test_crowdpose.json'


@pytest.fixture
def crowdpose_copy(tmp_path, data_dir):
  """A writable copy of the 2-image CrowdPose sample: (json data, image dir, write(data) -> json path)."""
  image_dir = tmp_path / 'images'
  image_dir.mkdir()
  for name in ('103319.jpg', '106848.jpg'):
    shutil.copy(data_dir / 'crowdpose_sample' / name, image_dir / name)
  data = json.loads((data_dir / CROWDPOSE_JSON).read_text())

  def write(d, name='ann.json'):
    path = tmp_path / name
    path.write_text(json.dumps(d))
    return str(path)
  return data, image_dir, write


def _load(path, image_dir, **kw):
  kw.setdefault('for_training', True)
  return records.load_coco_json(path, image_dir, 'crowdpose', **kw)


def test_good_sample_loads(crowdpose_copy):
  data, image_dir, write = crowdpose_copy
  recs, summary = _load(write(data), image_dir)
  assert [r['image_id'] for r in recs] == [im['id'] for im in data['images']]
  assert recs[0]['keypoints'].shape[1:] == (14, 3) and recs[0]['ignore_rle'].size == 0
  assert summary.num_images == 2 and summary.num_skipped == 0


@pytest.mark.parametrize('damage,reason', [('missing', 'missing file'), ('truncated', 'truncated file'),
                                           ('garbage', 'unknown format'), ('empty', 'empty file')])
def test_bad_image_files(crowdpose_copy, damage, reason):
  data, image_dir, write = crowdpose_copy
  path = image_dir / '106848.jpg'
  raw = path.read_bytes()
  if damage == 'missing':
    path.unlink()
  elif damage == 'truncated':
    path.write_bytes(raw[:len(raw) // 2])
  elif damage == 'garbage':
    path.write_bytes(b'this is not an image' * 10)
  else:
    path.write_bytes(b'')
  ann = write(data)
  with pytest.raises(records.DataError, match=r'106848\.jpg.*image id 106848'):
    _load(ann, image_dir)
  recs, summary = _load(ann, image_dir, skip_bad_samples=True)
  assert [r['image_id'] for r in recs] == [103319]
  assert summary.skipped == {reason: 1}
  assert f'skipped 1 bad images ({reason}: 1)' in summary.line()


def test_size_mismatch_with_json(crowdpose_copy):
  data, image_dir, write = crowdpose_copy
  data['images'][0]['width'] += 1
  with pytest.raises(records.DataError, match=r'106848\.jpg: file is 640x425 but .*ann\.json says 641x425'):
    _load(write(data), image_dir)


def test_grayscale_rgba_and_16bit_png_decode_to_rgb(crowdpose_copy):
  data, image_dir, write = crowdpose_copy
  bgr = cv2.imread(str(image_dir / '103319.jpg'))
  rgb = bgr[..., ::-1]
  variants = {
      'gray.png': (bgr[..., 0], np.repeat(bgr[..., :1], 3, axis=2)),
      'rgba.png': (np.concatenate([bgr, np.full(bgr.shape[:2] + (1,), 77, np.uint8)], -1), rgb),
      'deep.png': (bgr.astype(np.uint16) * 257, rgb),  # 16 bits per channel
      'gray.jpg': (bgr[..., 0], None),
  }
  for name, (pixels, _) in variants.items():
    cv2.imwrite(str(image_dir / name), pixels)
  entry = next(im for im in data['images'] if im['id'] == 103319)
  ann = next(a for a in data['annotations'] if a['image_id'] == 103319)
  data['images'] = [dict(entry, id=i + 1, file_name=name) for i, name in enumerate(variants)]
  data['annotations'] = [dict(ann, image_id=i + 1, id=100 + i) for i in range(len(variants))]
  recs, summary = _load(write(data), image_dir)
  assert summary.num_images == 4 and summary.num_skipped == 0
  for name, (pixels, expected) in variants.items():
    decoded = transforms.decode_image(open(image_dir / name, 'rb').read()).numpy()
    assert decoded.shape == rgb.shape, name
    if expected is not None:
      np.testing.assert_array_equal(decoded, expected, err_msg=name)
    else:  # grayscale JPEG: three equal channels
      assert (decoded[..., 0] == decoded[..., 2]).all()


def _verdicts(path, image_dir, **kw):
  """(records or error message, ground truth or error message): training's and evaluation's reading."""
  from litepose_jax import evaluation  # pylint: disable=g-import-not-at-top
  out = []
  for load in (lambda: _load(path, image_dir, for_training=False, **kw),
               lambda: evaluation.load_ground_truth(path, 'crowdpose', **kw)):
    try:
      out.append(load())
    except records.DataError as e:
      out.append(str(e))
  return out


def test_wrong_keypoint_count_blames_the_annotation_in_training_and_evaluation(crowdpose_copy):
  data, image_dir, write = crowdpose_copy
  bad = data['annotations'][2]   # the third of three in its image; the next one (another image) is fine
  assert data['annotations'][3]['image_id'] != bad['image_id']
  bad['keypoints'] = bad['keypoints'][:-3]
  ann = write(data)
  train_error, eval_error = _verdicts(ann, image_dir)
  assert train_error == eval_error   # one validator, one message
  assert (f"ann.json: annotation id {bad['id']} (annotations[2], image id {bad['image_id']}, "
          f"{bad['image_id']}.jpg) has 39 keypoint values, expected 3*14 = 42") in train_error
  (recs, summary), gt = _verdicts(ann, image_dir, skip_bad_samples=True)
  assert summary.skipped == {'wrong keypoint count': 1} and [r['image_id'] for r in recs] == [103319]
  assert gt.summary.skipped == summary.skipped and gt.image_ids.tolist() == [103319]
  assert {a['image_id'] for a in gt.dataset['annotations']} == {103319}   # pycocotools sees the same


def test_nan_joints_are_unlabelled_in_training_and_evaluation(crowdpose_copy):
  data, image_dir, write = crowdpose_copy
  anns = data['annotations']
  i = next(i for i, a in enumerate(anns) if i > 0 and a['num_keypoints'] >= 2)
  kps = anns[i]['keypoints']
  labelled = [j for j in range(14) if kps[3 * j + 2] > 0]
  kps[3 * labelled[0]] = float('nan')
  kps[3 * labelled[1] + 2] = float('inf')
  (recs, summary), gt = _verdicts(write(data), image_dir)   # evaluation used to reject the file
  rec = next(r for r in recs if r['image_id'] == anns[i]['image_id'])
  slot = [a['id'] for a in anns if a['image_id'] == anns[i]['image_id']].index(anns[i]['id'])
  person = gt.ann_ids.tolist().index(anns[i]['id'])
  for got in (rec['keypoints'][slot], gt.keypoints[person]):
    np.testing.assert_array_equal(got[labelled[:2]], np.zeros((2, 3)))
  assert summary.nonfinite_joints == gt.summary.nonfinite_joints == 2
  n = anns[i]['num_keypoints']
  assert rec['num_keypoints'][slot] == n - 2 and gt.dataset['annotations'][person]['num_keypoints'] == n - 2
  assert np.isfinite(gt.keypoints).all() and np.isfinite(
      np.asarray(gt.dataset['annotations'][person]['keypoints'], float)).all()


@pytest.mark.parametrize('damage', ['truncated', 'empty', 'categories', 'keypoint set', 'not numbers'])
def test_training_and_evaluation_reject_with_one_message(crowdpose_copy, damage):
  data, image_dir, write = crowdpose_copy
  if damage == 'categories':
    del data['categories'][0]['keypoints']
    data['categories'].append({'id': 2, 'name': 'car'})
  elif damage == 'keypoint set':
    data['categories'][0]['keypoints'] += ['a', 'b', 'c']
  elif damage == 'not numbers':
    data['annotations'][3]['keypoints'][4] = 'x'
  ann = write(data)
  text = json.dumps(data)
  if damage in ('truncated', 'empty'):
    with open(ann, 'w') as f:
      f.write(text[:len(text) // 2] if damage == 'truncated' else '')
  train_error, eval_error = _verdicts(ann, image_dir)
  assert isinstance(train_error, str) and train_error == eval_error
  assert train_error.startswith(ann) and '\n' not in train_error
  want = {'truncated': 'malformed JSON', 'empty': 'empty (0 bytes)', 'categories': "no category has a 'keypoints' list",
          'keypoint set': "has 17 keypoints but keypoint set 'crowdpose' has 14",
          'not numbers': f"annotation id {data['annotations'][3]['id']} (annotations[3]"}[damage]
  assert want in train_error


def test_nan_and_negative_coordinates(crowdpose_copy):
  data, image_dir, write = crowdpose_copy
  kps = data['annotations'][0]['keypoints']
  labelled = [i for i in range(14) if kps[3 * i + 2] > 0]
  kps[3 * labelled[0]] = float('nan')
  kps[3 * labelled[1] + 1] = -25.0
  recs, summary = _load(write(data), image_dir)
  rec = next(r for r in recs if r['image_id'] == data['annotations'][0]['image_id'])
  np.testing.assert_array_equal(rec['keypoints'][0, labelled[0]], [0, 0, 0])  # NaN joint → unlabelled
  assert rec['keypoints'][0, labelled[1], 1] == -25.0  # negative kept: it is only outside the image
  assert summary.nonfinite_joints == 1 and summary.joints_outside_image == 1
  assert 'NaN/inf' in summary.line()
  from litepose_jax.data import targets  # the transform handles the negative joint
  image = cv2.imread(str(image_dir / rec['file_name']))[..., ::-1].copy()
  out = targets.make_train_example(image, rec['keypoints'], None,
                                   dict(aug_scale=1.0, rot=0.0, dx=0, dy=0, flip=False), 256, 'crowdpose')
  assert np.isfinite(out['heatmaps'][0]).all()


def test_zero_people(crowdpose_copy):
  data, image_dir, write = crowdpose_copy
  data['annotations'] = [a for a in data['annotations'] if a['image_id'] != 106848]
  ann = write(data)
  recs, summary = _load(ann, image_dir, for_training=True)
  assert [r['image_id'] for r in recs] == [103319] and summary.removed_without_people == 1
  recs, _ = _load(ann, image_dir, for_training=False)  # evaluation keeps every image
  assert len(recs) == 2
  assert next(r for r in recs if r['image_id'] == 106848)['keypoints'].shape == (0, 14, 3)


@pytest.mark.parametrize('content,match', [(b'', 'empty'), (b'{"images": [', 'malformed JSON at line 1'),
                                           (b'[1, 2]', 'not a COCO-format file'),
                                           (b'{"images": [], "annotations": []}', 'lists no images')])
def test_empty_and_malformed_json(tmp_path, content, match):
  path = tmp_path / 'bad.json'
  path.write_bytes(content)
  with pytest.raises(records.DataError, match=match) as e:
    _load(str(path), str(tmp_path))
  assert str(path) in str(e.value)


def test_missing_json(tmp_path):
  with pytest.raises(records.DataError, match='annotation file not found'):
    _load(str(tmp_path / 'nope.json'), str(tmp_path))


def test_single_category_without_keypoint_names_loads(crowdpose_copy):
  data, image_dir, write = crowdpose_copy
  del data['categories'][0]['keypoints']   # evaluation always took such files; training now too
  recs, gt = _verdicts(write(data), image_dir)
  assert len(recs[0]) == 2 and gt.keypoints.shape == (5, 14, 3)


def test_other_categories_are_ignored(crowdpose_copy):
  data, image_dir, write = crowdpose_copy
  data['categories'].append({'id': 2, 'name': 'car'})
  data['annotations'].append({'id': 999, 'image_id': 103319, 'category_id': 2, 'bbox': [0, 0, 5, 5]})
  recs, summary = _load(write(data), image_dir)
  assert summary.other_category_annotations == 1
  rec = next(r for r in recs if r['image_id'] == 103319)
  assert rec['keypoints'].shape[0] == sum(a['image_id'] == 103319 and a.get('category_id') == 1
                                          for a in data['annotations'])


def test_more_than_30_people_is_counted(crowdpose_copy):
  data, image_dir, write = crowdpose_copy
  ann = data['annotations'][0]
  data['annotations'] += [dict(ann, id=5000 + i) for i in range(35)]
  recs, summary = _load(write(data), image_dir)
  assert summary.over_max_people == 1
  assert '1 images with > 30 people (tag targets keep the 30 largest)' in summary.line()


def test_ignore_regions_equal_authors_masks(reference_dir, data_dir):
  """COCO crowd RLEs and no-keypoint polygons rasterise to the fixtures' mask_image exactly."""
  z = np.load(reference_dir / 'targets_coco.npz')
  recs, _ = records.load_coco_json(data_dir / 'coco_mini/annotations/person_keypoints_val2017.json',
                                   data_dir / 'coco_mini/val2017', 'coco', for_training=False)
  by_id = {r['image_id']: r for r in recs}
  for image_id in {k.split('/')[0] for k in z.files if k[0].isdigit()}:
    rec = by_id[int(image_id)]
    keep = z[f'{image_id}/mask_image']
    ignore = np.zeros(rec['height'] * rec['width'], np.uint8)
    pos = 0
    for i, run in enumerate(rec['ignore_rle']):
      ignore[pos:pos + run] = i % 2
      pos += run
    ignore = ignore.reshape(rec['width'], rec['height']).T
    np.testing.assert_array_equal(ignore, 1 - keep, err_msg=image_id)


def test_rle_string_decoder_matches_pycocotools():
  rng = np.random.default_rng(0)
  for _ in range(5):
    m = (rng.random((37, 23)) < 0.3).astype(np.uint8)
    m[:, 5:9] = 1
    rle = mask_utils.encode(np.asfortranarray(m))
    counts = ignore_regions.rle_string_to_counts(rle['counts'])
    flat = np.repeat(np.arange(len(counts)) % 2, counts).astype(np.uint8)
    np.testing.assert_array_equal(flat.reshape(23, 37).T, m)
    np.testing.assert_array_equal(ignore_regions.rle_from_mask(m), counts)


def test_inspect_image_reads_headers(data_dir, tmp_path):
  info = image_files.inspect_image(str(data_dir / 'crowdpose_sample/106848.jpg'))
  assert (info.format, info.height, info.width, info.channels) == ('jpeg', 425, 640, 3)
  path = tmp_path / 'x.png'
  cv2.imwrite(str(path), np.zeros((7, 9), np.uint16))
  info = image_files.inspect_image(str(path))
  assert (info.format, info.height, info.width, info.channels, info.bit_depth) == ('png', 7, 9, 1, 16)
  path.write_bytes(path.read_bytes()[:-20])
  with pytest.raises(image_files.BadImageError, match='truncated PNG'):
    image_files.inspect_image(str(path))
  os.remove(path)
