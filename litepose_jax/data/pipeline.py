"""tf.data input pipelines: training batches with the authors' targets, and ordered evaluation batches.

Training (spec b, d.1): epochs of shuffled records → map(read, decode, random affine, flip, normalise;
parallel) → padded batch(drop_remainder) → map(targets: heatmaps, masks, tag joints of the whole batch) →
prefetch. Targets run per batch because TF's per-op cost is then paid once per batch, not per sample.

Resuming is exact. Sample number j of a process (j = step · per-process batch + slot) is a pure function
of (config.seed, process_index, j): its record is position j mod N of epoch j div N, whose order is a
shuffle seeded by (seed, epoch), and its augmentation draws come from a stateless RNG seeded by
(seed, process_index, j). `make_train_dataset(config, start_step=s)` therefore yields exactly the batches
s, s+1, ... of an uninterrupted run (the training loop passes the step it restored). Without
skip_bad_samples nothing is dropped mid-stream, so the correspondence is exact; with it, a sample whose
image fails to decode is dropped and later batches shift by one sample, the same way on every run.

Evaluation (spec e.1): ordered and deterministic; images are grouped by network input shape so that each
shape compiles once, batched in record order within a shape, and padded to full batches with '_mask'.

TF and JAX share the host's cores: `config.input.tf_threads` bounds tf.data's thread pool (0 = all cores
but one, minimum 1), and every op runs single-threaded inside it.
"""

from __future__ import annotations

import os
from typing import Optional

import tensorflow as tf

from litepose_jax import keypoints as kp_lib
from litepose_jax.data import geometry
from litepose_jax.data import sources
from litepose_jax.data import targets
from litepose_jax.data import transforms

_FOREVER = 2**62
_TRAIN_KEYS = ('image', 'heatmaps_0', 'heatmaps_1', 'masks_0', 'masks_1', 'joints_0', 'joints_1')


def _input_size(config) -> int:
  from litepose_jax import from_config  # pylint: disable=g-import-not-at-top
  return from_config.input_size(config)


def tf_threads(config) -> int:
  """tf.data thread budget: config.input.tf_threads, or all usable cores but one (at least 1)."""
  n = int(config.input.tf_threads)
  if n > 0:
    return n
  cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (os.cpu_count() or 1)
  return max(1, cores - 1)


def _options(threads: int) -> tf.data.Options:
  options = tf.data.Options()
  options.deterministic = True
  options.threading.private_threadpool_size = threads
  # One thread per op: parallelism comes from running `threads` samples at once, which scales better than
  # splitting small ops, and it keeps TF from spilling onto the cores left to JAX.
  options.threading.max_intra_op_parallelism = 1
  options.autotune.cpu_budget = threads
  return options


def _read_image(record) -> tf.Tensor:
  return record['image_bytes'] if 'image_bytes' in record else tf.io.read_file(record['image_path'])


def sample_augmentation(seed: tf.Tensor, height: tf.Tensor, width: tf.Tensor, config) -> dict:
  """Random draws of the authors' RandomAffineTransform + RandomHorizontalFlip for one sample (spec d.1).

  Args:
    seed: [2] int64 stateless seed.
    height: image height H.
    width: image width W.
    config: reads input.scale_range, max_rotation, max_translate, flip_prob.

  Returns:
    {'scale': aug_scale ~ U[lo, hi], 'rot': degrees ~ U[-r, r], 'dx', 'dy': ints ~ randint[-t·s, t·s) with
     s = min(H,W)/200·aug_scale (bounds truncated toward zero as numpy does), 'flip': bool with p}.
  """
  inp = config.input
  lo, hi = (float(v) for v in inp.scale_range)
  seeds = tf.random.experimental.stateless_split(seed, 5)
  aug_scale = tf.random.stateless_uniform([], seeds[0], lo, hi, tf.float64)
  rot = tf.random.stateless_uniform([], seeds[1], -float(inp.max_rotation), float(inp.max_rotation),
                                    tf.float64)
  s = tf.cast(tf.minimum(height, width), tf.float64) / 200.0 * aug_scale
  limit = tf.cast(float(inp.max_translate) * s, tf.int32)
  shift = [tf.random.stateless_uniform([], seeds[i], -limit, tf.maximum(limit, 1 - limit), tf.int32)
           for i in (2, 3)]
  flip = tf.random.stateless_uniform([], seeds[4], 0.0, 1.0) < float(inp.flip_prob)
  return {'scale': aug_scale, 'rot': rot, 'dx': shift[0], 'dy': shift[1], 'flip': flip}


def _train_fns(config, process_index: int):
  """((sample number j, record) → one sample's image and target inputs, batch → batch of the final keys)."""
  keypoint_set = kp_lib.get(config.dataset.keypoints)
  size = _input_size(config)
  max_people = int(config.input.max_people)
  per_sample, per_batch = targets.train_transform(size, keypoint_set, float(config.input.sigma), max_people,
                                                  mask_outside=bool(config.input.mask_outside_image))
  base_seed = tf.constant([int(config.seed), process_index], tf.int64)

  # No autograph: the code has no Python control flow on tensors, and converting it took ~10 s of tracing.
  @tf.autograph.experimental.do_not_convert
  def sample_fn(j, record):
    data = _read_image(record)
    hw = transforms.image_hw(data)
    # The authors' person filter (spec b): crowd annotations without keypoints are not people.
    used = tf.equal(record['iscrowd'], 0) | (record['num_keypoints'] > 0)
    seed = tf.random.experimental.stateless_fold_in(base_seed, j)
    features = {'image_bytes': data, 'image_hw': hw, 'ignore_rle': record['ignore_rle'],
                'keypoints': tf.boolean_mask(record['keypoints'], used),
                'area': tf.boolean_mask(record['area'], used),
                'aug': sample_augmentation(seed, hw[0], hw[1], config)}
    return per_sample(features)

  @tf.autograph.experimental.do_not_convert
  def batch_fn(batch):
    out = per_batch(batch)
    return {k: out[k] for k in _TRAIN_KEYS}

  return sample_fn, batch_fn


def make_train_dataset(config, *, process_index: int = 0, process_count: int = 1, start_step: int = 0,
                       num_epochs: Optional[int] = None, source=None) -> tf.data.Dataset:
  """Per-process training batches (module docstring for order, resume and threading).

  Args:
    config: the full config (dataset, input, seed, model.arch for the input size).
    process_index: this process (jax.process_index()).
    process_count: number of processes; each gets input.batch_size // process_count samples per batch.
    start_step: first step to produce (resume): the batches equal those of an uninterrupted run.
    num_epochs: stop after this many epochs of this process's records (default: never).
    source: a sources.* object to use instead of the one the config names (tests, benchmarks).

  Returns:
    tf.data.Dataset of dicts, B = batch_size // process_count, I input size, K joints:
      'image' [B,I,I,3] float32 ImageNet-normalised RGB; 'heatmaps_0' [B,I/4,I/4,K], 'heatmaps_1'
      [B,I/2,I/2,K] float32; 'masks_0' [B,I/4,I/4], 'masks_1' [B,I/2,I/2] float32 (1 = use);
      'joints_0', 'joints_1' [B,30,K,2] int32 ((k·R² + y·R + x, 1) per labelled joint, (0, 0) unused).
  """
  global_batch = int(config.input.batch_size)
  if global_batch % process_count:
    raise ValueError(f'input.batch_size {global_batch} is not divisible by {process_count} processes')
  batch = global_batch // process_count
  source = source or sources.make_source(config, 'train', process_index=process_index,
                                         process_count=process_count)
  print(f'litepose_jax.data: {source.summary_line}', flush=True)
  n = source.num_examples
  start = int(start_step) * batch
  start_epoch, offset = divmod(start, n)
  seed = int(config.seed)
  buffer = int(config.input.shuffle_buffer)

  @tf.autograph.experimental.do_not_convert
  def epoch(e):
    first = tf.where(tf.equal(e, start_epoch), tf.constant(offset, tf.int64), tf.constant(0, tf.int64))
    return source.epoch_dataset(seed, e, first, buffer)

  last_epoch = _FOREVER if num_epochs is None else int(num_epochs)
  records = tf.data.Dataset.range(start_epoch, last_epoch).flat_map(epoch)
  ds = tf.data.Dataset.zip(tf.data.Dataset.range(start, _FOREVER), records)
  threads = tf_threads(config)
  sample_fn, batch_fn = _train_fns(config, process_index)
  ds = ds.map(sample_fn, num_parallel_calls=threads, deterministic=True)
  if config.dataset.skip_bad_samples:
    # Last line of defence for files that passed the load-time checks but still fail to decode: drop the
    # sample (TF logs a warning naming the error) instead of ending the epoch.
    ds = ds.ignore_errors(log_warning=True)
  # Variable-length fields (people, ignore-region runs) are zero-padded to the batch maximum; the target
  # ops treat zero padding as absent (targets.get_batch_targets).
  ds = ds.padded_batch(batch, drop_remainder=True)
  ds = ds.map(batch_fn, num_parallel_calls=threads, deterministic=True).prefetch(2)
  return ds.with_options(_options(threads))


def eval_annotation_file(config) -> str:
  """The ground-truth json of the evaluation split (for the COCO / CrowdPose evaluator)."""
  ds = config.dataset
  if ds.name == 'synthetic':
    from litepose_jax.data import synthetic  # pylint: disable=g-import-not-at-top
    return synthetic.ensure(config, 'val')[0]
  if ds.name == 'coco_json':
    return sources._json_paths(config, 'eval')[0]  # pylint: disable=protected-access
  from litepose_jax.data import builders  # pylint: disable=g-import-not-at-top
  return builders.BUILDERS[ds.name].split_files(sources.manual_dir_of(config))[ds.eval_split][0]


def _shape_key(out_hw: tf.Tensor) -> tf.Tensor:
  return tf.cast(out_hw[0], tf.int64) * 100_000 + tf.cast(out_hw[1], tf.int64)


def make_eval_dataset(config, *, process_index: int = 0, process_count: int = 1,
                      batch_size: Optional[int] = None, source=None) -> tf.data.Dataset:
  """Ordered evaluation batches of equal network-input shape, padded with '_mask' (spec e.1).

  Every process reads the same record stream and forms the same global batches (so all processes run the
  same shapes in the same order), then keeps its slice of each batch and decodes only that.

  Args:
    config: reads dataset.*, eval.batch_size (global), model.arch / input.size.
    process_index: this process.
    process_count: number of processes.
    batch_size: global batch size (default config.eval.batch_size).
    source: a sources.* object to use instead of the one the config names.

  Returns:
    tf.data.Dataset of dicts, B = batch_size // process_count, h' × w' the batch's input shape:
      'image' [B,h',w',3] float32 normalised; 'image_id' [B] int64; 'center' [B,2] float32 (x, y);
      'scale' [B,2] float32 (w, h in 200-px units); 'image_size' [B,2] int32 (H, W); '_mask' [B] bool.
    Padding entries have _mask False, zero images and image_id -1.
  """
  global_batch = int(batch_size or config.eval.batch_size)
  if global_batch % process_count:
    raise ValueError(f'eval batch size {global_batch} is not divisible by {process_count} processes')
  local = global_batch // process_count
  size = _input_size(config)
  source = source or sources.make_source(config, 'eval')
  print(f'litepose_jax.data: {source.summary_line}', flush=True)   # what was skipped or repaired
  threads = tf_threads(config)

  @tf.autograph.experimental.do_not_convert
  def meta(record):
    out_hw, _, _, _ = geometry.eval_geometry(record['height'], record['width'], size)
    path = record.get('image_path', tf.constant(''))
    data = record.get('image_bytes', tf.constant(b''))
    return {'image_id': record['image_id'], 'path': path, 'data': data, 'out_hw': out_hw, '_mask': True}

  @tf.autograph.experimental.do_not_convert
  def pad_batch(batch):
    n = tf.shape(batch['image_id'])[0]
    pad = global_batch - n
    out = {
        'image_id': tf.concat([batch['image_id'], tf.fill([pad], tf.constant(-1, tf.int64))], 0),
        'path': tf.concat([batch['path'], tf.fill([pad], '')], 0),
        'data': tf.concat([batch['data'], tf.fill([pad], '')], 0),
        'out_hw': tf.concat([batch['out_hw'], tf.repeat(batch['out_hw'][:1], pad, axis=0)], 0),
        '_mask': tf.concat([batch['_mask'], tf.zeros([pad], tf.bool)], 0),
    }
    return {k: v[process_index * local:(process_index + 1) * local] for k, v in out.items()}

  resize = transforms.get_eval_resize(size)

  @tf.autograph.experimental.do_not_convert
  def load(item):
    def real():
      data = tf.cond(tf.strings.length(item['data']) > 0, lambda: item['data'],
                     lambda: tf.io.read_file(item['path']))
      f = resize({'image': transforms.decode_image(data)})
      return f['image'], f['center'], f['scale'], f['image_size']

    def padding():
      hw = item['out_hw']
      return (tf.zeros([hw[0], hw[1], 3], tf.float32), tf.zeros([2]), tf.ones([2]), tf.zeros([2], tf.int32))

    image, center, scale, image_size = tf.cond(item['_mask'], real, padding)
    return {'image': image, 'image_id': item['image_id'], 'center': center, 'scale': scale,
            'image_size': image_size, '_mask': item['_mask']}

  ds = source.ordered_dataset().map(meta)
  ds = ds.group_by_window(key_func=lambda item: _shape_key(item['out_hw']),
                          reduce_func=lambda key, window: window.batch(global_batch),
                          window_size=global_batch)
  ds = ds.map(pad_batch).unbatch()
  ds = ds.map(load, num_parallel_calls=threads, deterministic=True).batch(local).prefetch(2)
  return ds.with_options(_options(threads))
