"""The shared TFDS builder for COCO-format keypoint datasets read from a manual-download directory.

Fully offline: the builder never downloads anything (TFDS keeps GCS access disabled) and reads only
`dl_manager.manual_dir`. Each split is one json + one image folder, parsed and checked by
`records.load_coco_json`; the stored examples are the records of records.py with the image file bytes in
'image_bytes' (stored as they are: JPEG / PNG; the pipeline's decoder handles grayscale, RGBA and 16-bit).
Training splits drop images without annotations at build time, as the authors' training set does (spec b);
evaluation splits keep every image of the json. The load summary of every split (kept, removed, skipped,
more than 30 people, ...) is stored in `info.metadata[split]`.
"""

from __future__ import annotations

import abc
import os
from typing import Mapping

import numpy as np
import tensorflow_datasets as tfds

from litepose_jax import keypoints as kp_lib
from litepose_jax.data import records as records_lib


def features(num_keypoints: int) -> tfds.features.FeaturesDict:
  """TFDS features of one record (records.py layout; P persons, K joints, C RLE runs)."""
  t = tfds.features.Tensor
  return tfds.features.FeaturesDict({
      'image_bytes': t(shape=(), dtype=np.object_),
      'image_id': t(shape=(), dtype=np.int64),
      'file_name': tfds.features.Text(),
      'height': t(shape=(), dtype=np.int32),
      'width': t(shape=(), dtype=np.int32),
      'crowd_index': t(shape=(), dtype=np.float32),
      'keypoints': t(shape=(None, num_keypoints, 3), dtype=np.float64),
      'bbox': t(shape=(None, 4), dtype=np.float32),
      'area': t(shape=(None,), dtype=np.float32),
      'iscrowd': t(shape=(None,), dtype=np.int32),
      'num_keypoints': t(shape=(None,), dtype=np.int32),
      'ignore_rle': t(shape=(None,), dtype=np.int32),
  })


class CocoFormatKeypoints(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base builder: subclasses name the keypoint set, the splits and where each split's files are."""

  KEYPOINTS: str
  TRAIN_SPLITS: tuple = ('train',)

  def __init__(self, *, skip_bad_samples: bool = False, **kwargs):
    """`skip_bad_samples`: drop and count unreadable images / bad annotations instead of failing."""
    self._skip_bad_samples = skip_bad_samples
    super().__init__(**kwargs)

  @classmethod
  @abc.abstractmethod
  def split_files(cls, manual_dir: str) -> Mapping[str, tuple[str, str]]:
    """{split name: (annotation json, image folder)} inside the manual directory."""

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=features(kp_lib.get(self.KEYPOINTS).num_keypoints),
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = os.fspath(dl_manager.manual_dir)
    generators = {}
    for split, (ann_file, image_dir) in self.split_files(manual_dir).items():
      if not os.path.exists(ann_file):
        continue  # a layout may lack optional splits (e.g. CrowdPose without train)
      recs, summary = records_lib.load_coco_json(
          ann_file, image_dir, self.KEYPOINTS, for_training=split in self.TRAIN_SPLITS,
          skip_bad_samples=self._skip_bad_samples, source=f'{self.name} {split}')
      self.info.metadata[split] = summary.to_json()
      generators[split] = self._generate_examples(recs)
    if not generators:
      raise FileNotFoundError(f'{manual_dir}: none of the expected annotation files exist '
                              f'({[v[0] for v in self.split_files(manual_dir).values()]})\n'
                              + self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    return generators

  def _generate_examples(self, recs):
    for rec in recs:
      with open(rec['image_path'], 'rb') as f:
        data = f.read()
      example = {k: v for k, v in rec.items() if k != 'image_path'}
      example['image_bytes'] = data
      yield int(rec['image_id']), example
