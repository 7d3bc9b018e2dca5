"""Configs on the small real data of tests/data shared by the data-pipeline tests."""

from configs import common


def coco_mini_config(data_dir, batch: int = 4, shuffle_buffer: int = 0):
  """configs/common XS on tests/data/coco_mini (COCO keypoints, coco_json), one tf.data thread.

  shuffle_buffer: 0 keeps the config's."""
  c = common.get_config('xs', 'coco')
  c.dataset.name = 'coco_json'
  c.dataset.ann_file = str(data_dir / 'coco_mini/annotations/person_keypoints_train2017.json')
  c.dataset.image_dir = str(data_dir / 'coco_mini/train2017')
  c.input.batch_size = batch
  c.input.tf_threads = 1
  if shuffle_buffer:
    c.input.shuffle_buffer = shuffle_buffer
  c.eval.batch_size = 8
  return c
