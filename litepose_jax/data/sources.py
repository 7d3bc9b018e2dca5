"""Record sources behind the pipelines: which records a config names, and how to stream them per epoch.

Two kinds, one interface (`epoch_dataset`, `ordered_dataset`, `num_examples`, `summary_line`):
  * InMemorySource: records from a COCO-format json ('coco_json', 'synthetic'); images are read from disk
    by path inside tf.data. An epoch is a full permutation of the indices seeded by (seed, epoch).
  * TfdsSource: a prepared TFDS builder ('crowdpose', 'coco'); an epoch is the split streamed in file
    order through a shuffle buffer seeded by (seed, epoch).
Both are deterministic functions of (seed, epoch), which is what makes resuming exact (pipeline.py).
Per-process sharding happens here: process p of n sees its own disjoint 1/n of the records.

Records in tf.data carry the keys of records.py, with 'image_bytes' (TFDS) or 'image_path' (json).
"""

from __future__ import annotations

import functools
import os
from typing import Optional

import numpy as np
import tensorflow as tf

from litepose_jax.data import records as records_lib

# Keys every source yields to the pipelines (plus 'image_bytes' or 'image_path').
RECORD_KEYS = ('image_id', 'height', 'width', 'keypoints', 'area', 'iscrowd', 'num_keypoints', 'ignore_rle')


def epoch_seed(seed: int, epoch: tf.Tensor) -> tf.Tensor:
  """A distinct int64 shuffle seed per (seed, epoch)."""
  return tf.cast(seed, tf.int64) * 1_000_003 + tf.cast(epoch, tf.int64) + 1


class InMemorySource:
  """Records held as tensors (ragged over persons); random access by index."""

  def __init__(self, records: list, summary: records_lib.LoadSummary, *, process_index: int = 0,
               process_count: int = 1, ann_file: Optional[str] = None):
    records = records[process_index::process_count]
    if not records:
      raise ValueError(f'{summary.source}: no records left for process {process_index} of {process_count}')
    self.summary = summary
    self.ann_file = ann_file
    self.num_examples = len(records)
    k = records[0]['keypoints'].shape[1]

    def ragged(key, dtype, inner):
      values = np.concatenate([np.asarray(r[key], dtype).reshape((-1,) + inner) for r in records])
      lengths = [len(r[key]) for r in records]
      return tf.RaggedTensor.from_row_lengths(tf.constant(values), tf.constant(lengths, tf.int64))

    self._table = {
        'image_id': tf.constant([r['image_id'] for r in records], tf.int64),
        'image_path': tf.constant([r['image_path'] for r in records]),
        'height': tf.constant([r['height'] for r in records], tf.int32),
        'width': tf.constant([r['width'] for r in records], tf.int32),
        'keypoints': ragged('keypoints', np.float64, (k, 3)),
        'area': ragged('area', np.float32, ()),
        'iscrowd': ragged('iscrowd', np.int32, ()),
        'num_keypoints': ragged('num_keypoints', np.int32, ()),
        'ignore_rle': ragged('ignore_rle', np.int32, ()),
    }

  @property
  def summary_line(self) -> str:
    return self.summary.line()

  @tf.autograph.experimental.do_not_convert
  def _get(self, index):
    return {key: value[index] for key, value in self._table.items()}

  def epoch_dataset(self, seed: int, epoch: tf.Tensor, start: tf.Tensor, shuffle_buffer: int):
    """Records of `epoch` (a seeded full permutation) from position `start` on."""
    del shuffle_buffer  # indices are cheap: always a full shuffle
    n = self.num_examples
    order = tf.data.Dataset.range(n).shuffle(n, seed=epoch_seed(seed, epoch), reshuffle_each_iteration=False)
    return order.skip(start).map(self._get)

  def ordered_dataset(self):
    return tf.data.Dataset.range(self.num_examples).map(self._get)


class TfdsSource:
  """A split of a prepared TFDS builder, optionally one process's even share of it."""

  def __init__(self, builder, split: str, *, process_index: int = 0, process_count: int = 1,
               ann_file: Optional[str] = None):
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    if split not in builder.info.splits:
      raise ValueError(f'{builder.name}: split {split!r} was not built; available: '
                       f'{sorted(builder.info.splits)} (add its json to the manual directory and delete '
                       f'{builder.data_dir} to rebuild)')
    if process_count > 1:
      split = tfds.even_splits(split, n=process_count, drop_remainder=True)[process_index]
    self._split = split
    self.ann_file = ann_file
    self.num_examples = builder.info.splits[split].num_examples
    self._meta = dict(builder.info.metadata).get(split.split('[')[0], {})
    self._ds = builder.as_dataset(split=split, shuffle_files=False,
                                  read_config=tfds.ReadConfig(try_autocache=False))
    self._name = builder.name

  @property
  def summary_line(self) -> str:
    if not self._meta:
      return f'{self._name} {self._split}: {self.num_examples} images'
    summary = records_lib.LoadSummary(**{k: v for k, v in self._meta.items() if k != 'skipped'})
    summary.skipped.update(self._meta.get('skipped', {}))
    return summary.line() + f' (this process: {self.num_examples} images)'

  def epoch_dataset(self, seed: int, epoch: tf.Tensor, start: tf.Tensor, shuffle_buffer: int):
    """Records of `epoch` through a shuffle buffer seeded by (seed, epoch), from position `start` on."""
    ds = self._ds.shuffle(shuffle_buffer, seed=epoch_seed(seed, epoch), reshuffle_each_iteration=False)
    # Skipping happens before any image is decoded; on resume it only re-reads the records.
    return ds.skip(start)

  def ordered_dataset(self):
    return self._ds


def manual_dir_of(config) -> str:
  """Where a TFDS dataset's manual download lies: dataset.manual_dir, default data_dir/<name>."""
  return config.dataset.manual_dir or os.path.join(config.dataset.data_dir, config.dataset.name)


def _json_paths(config, split_kind: str) -> tuple[str, str]:
  """(ann_file, image_dir) of a 'coco_json' config; eval uses eval_ann_file / eval_image_dir when set."""
  ds = config.dataset
  ann_file, image_dir = ds.ann_file, ds.image_dir
  if split_kind == 'eval':
    ann_file = ds.eval_ann_file or ann_file
    image_dir = ds.eval_image_dir or image_dir
  if not ann_file:
    raise ValueError("dataset.name='coco_json' needs config.dataset.ann_file (and image_dir)")
  return ann_file, image_dir or os.path.dirname(ann_file)


@functools.lru_cache(maxsize=8)
def _load_json(ann_file: str, image_dir: str, keypoints: str, training: bool, skip: bool, max_people: int,
               source: str, mtime_ns: int):
  """load_coco_json, cached per file version: the pipelines and steps_per_epoch share one load (the image
  checks touch every file, which takes a while on a large custom dataset)."""
  del mtime_ns  # part of the cache key only
  return records_lib.load_coco_json(ann_file, image_dir, keypoints, for_training=training,
                                    skip_bad_samples=skip, max_people=max_people, source=source)


def make_source(config, split_kind: str, *, process_index: int = 0, process_count: int = 1):
  """The record source a config names for 'train' or 'eval' (config.dataset.name decides the kind)."""
  from litepose_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  ds = config.dataset
  training = split_kind == 'train'
  max_people = int(config.input.max_people)
  skip = bool(ds.skip_bad_samples)
  if ds.name in ('coco_json', 'synthetic'):
    if ds.name == 'synthetic':
      ann_file, image_dir = synthetic.ensure(config, 'train' if training else 'val')
    else:
      ann_file, image_dir = _json_paths(config, split_kind)
    mtime = os.stat(ann_file).st_mtime_ns if os.path.exists(ann_file) else 0
    recs, summary = _load_json(str(ann_file), str(image_dir), ds.keypoints, training, skip, max_people,
                               f'{ds.name} {split_kind}', mtime)
    return InMemorySource(recs, summary, process_index=process_index, process_count=process_count,
                          ann_file=ann_file)
  from litepose_jax.data import builders  # pylint: disable=g-import-not-at-top
  manual_dir = manual_dir_of(config)
  builder = builders.prepared_builder(ds.name, ds.data_dir, manual_dir, skip_bad_samples=skip)
  split = ds.train_split if training else ds.eval_split
  ann_file, _ = builder.split_files(manual_dir)[split]
  return TfdsSource(builder, split, process_index=process_index, process_count=process_count,
                    ann_file=ann_file)
