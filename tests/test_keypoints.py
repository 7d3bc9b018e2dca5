"""Keypoint metadata against the dataset files and the spec."""

import json

import pytest

from litepose_jax import keypoints


def test_joint_names_match_the_dataset_json(data_dir):
  cp = json.load(open(data_dir / 'crowdpose_sample' / 'test_crowdpose.json'))
  assert tuple(cp['categories'][0]['keypoints']) == keypoints.CROWDPOSE.joint_names
  coco = json.load(open(data_dir / 'coco_mini' / 'annotations' / 'person_keypoints_val2017.json'))
  cat = coco['categories'][0]
  assert tuple(cat['keypoints']) == keypoints.COCO.joint_names
  # COCO's skeleton in the json is 1-based.
  assert {tuple(sorted((a - 1, b - 1))) for a, b in cat['skeleton']} == {
      tuple(sorted(e)) for e in keypoints.COCO.skeleton}


def test_flip_index_swaps_left_and_right_names():
  for ks in keypoints.KEYPOINT_SETS.values():
    for k, f in enumerate(ks.flip_index):
      name = ks.joint_names[k]
      mirrored = name.replace('left', 'RIGHT').replace('right', 'left').replace('RIGHT', 'right')
      assert ks.joint_names[f] == mirrored, (ks.name, name)


def test_grouping_order_is_the_authors():
  # spec (e).6: the COCO order, truncated to 14 entries for CrowdPose.
  assert keypoints.COCO.joint_order == (0, 1, 2, 3, 4, 5, 6, 11, 12, 7, 8, 9, 10, 13, 14, 15, 16)
  assert keypoints.CROWDPOSE.joint_order == (0, 1, 2, 3, 4, 5, 6, 11, 12, 7, 8, 9, 10, 13)


def test_a_new_keypoint_set_is_one_entry_and_validated():
  hand = keypoints.KeypointSet(name='test_three', joint_names=('left_a', 'right_a', 'mid'),
                               flip_index=(1, 0, 2), sigmas=(.05, .05, .05), skeleton=((0, 2), (1, 2)),
                               joint_order=(2, 0, 1), oks_scale='bbox', ignore_no_keypoint_persons=False)
  try:
    keypoints.register(hand)
    assert keypoints.get('test_three').num_keypoints == 3
  finally:
    keypoints.KEYPOINT_SETS.pop('test_three', None)
  with pytest.raises(ValueError, match='involution'):
    keypoints.KeypointSet(name='bad', joint_names=('a', 'b', 'c'), flip_index=(1, 2, 0),
                          sigmas=(.1,) * 3, skeleton=(), joint_order=(0, 1, 2), oks_scale='area',
                          ignore_no_keypoint_persons=False)
  with pytest.raises(ValueError, match='unknown keypoint set'):
    keypoints.get('nope')
