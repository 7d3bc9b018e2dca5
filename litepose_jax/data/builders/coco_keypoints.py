"""TFDS builder `coco_keypoints`: COCO 2017 person keypoints (17 joints), from a manual download.

Layout of the manual directory (default data/coco):
  annotations/person_keypoints_{train,val}2017.json
  train2017/*.jpg, val2017/*.jpg
Splits: 'train' (train2017) and 'validation' (val2017, every image kept for evaluation).
"""

from __future__ import annotations

import os

import tensorflow_datasets as tfds

from litepose_jax.data.builders import common


class CocoKeypoints(common.CocoFormatKeypoints):
  """COCO person keypoints; records as litepose_jax.data.records (with the crowd / no-keypoint ignore RLE)."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  KEYPOINTS = 'coco'
  TRAIN_SPLITS = ('train',)
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Download COCO 2017 from https://cocodataset.org/#download (train2017.zip, val2017.zip,
  annotations_trainval2017.zip) and place:
    <manual_dir>/annotations/person_keypoints_{train,val}2017.json
    <manual_dir>/train2017/*.jpg
    <manual_dir>/val2017/*.jpg
  The default manual_dir is data/coco (config.dataset.manual_dir overrides it).
  """

  @classmethod
  def split_files(cls, manual_dir):
    return {split: (os.path.join(manual_dir, 'annotations', f'person_keypoints_{year}.json'),
                    os.path.join(manual_dir, year))
            for split, year in (('train', 'train2017'), ('validation', 'val2017'))}
