"""The synthetic dataset: deterministic, COCO-style labels that agree with what is drawn, loadable records."""

import json

import numpy as np

from configs import common
from litepose_jax import keypoints as kp_lib
from litepose_jax.data import records
from litepose_jax.data import synthetic


def test_render_is_deterministic_and_labels_are_consistent():
  ks = kp_lib.get('coco')
  people, counts = 0, np.zeros(3, int)
  for n in range(12):
    image, anns = synthetic.render_image(n, ks, seed=3, split='train')
    again, anns2 = synthetic.render_image(n, ks, seed=3, split='train')
    np.testing.assert_array_equal(image, again)
    assert len(anns) == len(anns2) and len(anns) <= 8  # people hidden entirely are not annotated
    h, w = image.shape[:2]
    for a in anns:
      kps = a['keypoints']
      v = kps[:, 2]
      assert set(np.unique(v)) <= {0, 1, 2}
      counts += np.bincount(v.astype(int), minlength=3)
      assert (kps[v == 0] == 0).all()  # unlabelled joints are (0, 0, 0), as COCO
      inside = kps[v > 0]
      assert ((inside[:, 0] >= 0) & (inside[:, 0] < w) & (inside[:, 1] >= 0) & (inside[:, 1] < h)).all()
      x, y, bw, bh = a['bbox']
      assert 0 <= x and 0 <= y and x + bw <= w and y + bh <= h and a['area'] > 0
      people += 1
  assert people >= 20
  assert (counts > 0).all()  # unlabelled, occluded (v=1) and visible (v=2) joints all occur
  other, _ = synthetic.render_image(0, ks, seed=4, split='train')
  assert not np.array_equal(other, synthetic.render_image(0, ks, seed=3, split='train')[0])


def test_generate_and_cache(tmp_path):
  config = common.get_config('xs', 'crowdpose')
  config.dataset.name = 'synthetic'
  config.dataset.data_dir = str(tmp_path)
  with config.unlocked():
    config.dataset.synthetic_val_images = 5
  ann_file, image_dir = synthetic.ensure(config, 'val')
  data = json.load(open(ann_file))
  assert len(data['images']) == 5 and data['categories'][0]['keypoints'] == list(kp_lib.CROWDPOSE.joint_names)
  for a in data['annotations']:
    assert a['num_keypoints'] == sum(v > 0 for v in a['keypoints'][2::3])
  assert all('crowdIndex' in im for im in data['images'])
  mtime = (tmp_path / 'synthetic').stat().st_mtime_ns
  assert synthetic.ensure(config, 'val') == (ann_file, image_dir)  # cached: not regenerated
  assert (tmp_path / 'synthetic').stat().st_mtime_ns == mtime
  recs, summary = records.load_coco_json(ann_file, image_dir, 'crowdpose', for_training=False)
  assert summary.num_images == 5 and summary.num_skipped == 0 and len(recs) == 5
