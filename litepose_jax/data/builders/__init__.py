"""TFDS builders of the supported datasets, by `config.dataset.name`."""

from __future__ import annotations

import os
from typing import Optional

import tensorflow_datasets as tfds

from litepose_jax.data.builders import coco_keypoints
from litepose_jax.data.builders import crowdpose

BUILDERS = {'crowdpose': crowdpose.Crowdpose, 'coco': coco_keypoints.CocoKeypoints}


def prepared_builder(name: str, data_dir: str, manual_dir: Optional[str] = None, *,
                     skip_bad_samples: bool = False) -> tfds.core.DatasetBuilder:
  """The builder of dataset `name`, prepared (built once from `manual_dir`, default data_dir/<name>)."""
  if name not in BUILDERS:
    raise ValueError(f'no TFDS builder for dataset {name!r}; known: {sorted(BUILDERS)}')
  manual_dir = manual_dir or os.path.join(data_dir, name)
  builder = BUILDERS[name](data_dir=data_dir, skip_bad_samples=skip_bad_samples)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=manual_dir, try_download_gcs=False))
  return builder
