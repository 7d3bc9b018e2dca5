"""TFDS builder `crowdpose`: CrowdPose (Li et al., CVPR 2019), 14 joints, from a manual download.

Layout of the manual directory (default data/crowdpose, as the authors' ROOT):
  json/crowdpose_{train,val,trainval,test}.json
  images/<file_name>
Splits are the json files found (the authors train on trainval and evaluate on test).
"""

from __future__ import annotations

import os

import tensorflow_datasets as tfds

from litepose_jax.data.builders import common

_SPLITS = ('train', 'val', 'trainval', 'test')


class Crowdpose(common.CocoFormatKeypoints):
  """CrowdPose keypoints; records as litepose_jax.data.records."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  KEYPOINTS = 'crowdpose'
  TRAIN_SPLITS = ('train', 'trainval')
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Download CrowdPose from https://github.com/Jeff-sjtu/CrowdPose (images: Google Drive link in its README,
  annotations: crowdpose-api/annotations or the same Drive folder) and place:
    <manual_dir>/json/crowdpose_{train,val,trainval,test}.json
    <manual_dir>/images/*.jpg
  The default manual_dir is data/crowdpose (config.dataset.manual_dir overrides it).
  """

  @classmethod
  def split_files(cls, manual_dir):
    return {s: (os.path.join(manual_dir, 'json', f'crowdpose_{s}.json'), os.path.join(manual_dir, 'images'))
            for s in _SPLITS}
