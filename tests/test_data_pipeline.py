"""tf.data pipelines on real images (coco_mini, crowdpose_sample), synthetic data and a TFDS build:
batch contract, equality with make_train_example, exact resume, sharding, threads, eval parity with the
authors' network input, eval grouping / padding, and bad files in a full epoch."""

import json
import shutil

import cv2
import numpy as np
import pytest
import tensorflow as tf

from configs import common
from litepose_jax.data import pipeline
from litepose_jax.data import sources
from litepose_jax.data import targets
from tests import data_support

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


@pytest.fixture(scope='module')
def coco_run(data_dir):
  """The config and the first 12 batches of an uninterrupted run (36 images: 9 steps per epoch)."""
  config = data_support.coco_mini_config(data_dir)
  ds = pipeline.make_train_dataset(config)
  batches = [{k: v.numpy() for k, v in b.items()} for b in ds.take(12)]
  return config, ds, batches


def test_train_batch_contract(coco_run):
  config, ds, batches = coco_run
  b = batches[0]
  k = 17
  assert b['image'].shape == (4, 256, 256, 3) and b['image'].dtype == np.float32
  assert b['heatmaps_0'].shape == (4, 64, 64, k) and b['heatmaps_1'].shape == (4, 128, 128, k)
  assert b['masks_0'].shape == (4, 64, 64) and b['masks_1'].shape == (4, 128, 128)
  assert b['joints_0'].shape == (4, 30, k, 2) and b['joints_0'].dtype == np.int32
  assert ds.options().threading.private_threadpool_size == 1
  grey = b['image'] * STD + MEAN
  assert grey.min() >= -1e-5 and grey.max() <= 1 + 1e-5
  for batch in batches:
    for s, res in enumerate((64, 128)):
      assert set(np.unique(batch[f'masks_{s}'])) <= {0.0, 1.0}
      heat, joints = batch[f'heatmaps_{s}'], batch[f'joints_{s}']
      assert heat.min() >= 0 and heat.max() <= 1
      valid = joints[..., 1] == 1
      assert ((joints[..., 0] == 0) | valid).all() and set(np.unique(joints[..., 1])) <= {0, 1}
      n, _, _ = np.nonzero(valid)
      kk, rest = np.divmod(joints[..., 0][valid], res * res)
      y, x = np.divmod(rest, res)
      # Every packed joint sits on a Gaussian peak of its own channel.
      np.testing.assert_array_equal(heat[n, y, x, kk], 1.0)
  assert sum(b['joints_0'][..., 1].sum() for b in batches) > 100


def test_pipeline_sample_equals_make_train_example(coco_run):
  """The pipeline runs the same transform as the eager API: same draws → identical example."""
  config, _, batches = coco_run
  source = sources.make_source(config, 'train')
  record = next(iter(source.epoch_dataset(config.seed, tf.constant(0, tf.int64), tf.constant(0, tf.int64),
                                          8)))
  image = cv2.imread(record['image_path'].numpy().decode())[..., ::-1].copy()
  seed = tf.random.experimental.stateless_fold_in(tf.constant([config.seed, 0], tf.int64),
                                                  tf.constant(0, tf.int64))
  aug = pipeline.sample_augmentation(seed, image.shape[0], image.shape[1], config)
  aug = {'aug_scale': float(aug['scale']), 'rot': float(aug['rot']), 'dx': int(aug['dx']),
         'dy': int(aug['dy']), 'flip': bool(aug['flip'])}
  used = (record['iscrowd'].numpy() == 0) | (record['num_keypoints'].numpy() > 0)
  counts = record['ignore_rle'].numpy()
  flat = np.repeat(np.arange(len(counts)) % 2, counts) if len(counts) else np.zeros(image.size // 3)
  ignore = flat.reshape(image.shape[1], image.shape[0]).T
  out = targets.make_train_example(image, record['keypoints'].numpy()[used], ignore, aug, 256, 'coco',
                                   area=record['area'].numpy()[used])
  b = batches[0]
  np.testing.assert_allclose(b['image'][0], out['image'], atol=1e-6)
  for s in range(2):
    np.testing.assert_array_equal(b[f'heatmaps_{s}'][0], out['heatmaps'][s])
    np.testing.assert_array_equal(b[f'masks_{s}'][0], out['masks'][s])
    np.testing.assert_array_equal(b[f'joints_{s}'][0], out['joints'][s])


def test_resume_is_exact(coco_run):
  """start_step=s yields batches s, s+1, ... of the uninterrupted run, across an epoch boundary."""
  config, _, batches = coco_run
  resumed = [{k: v.numpy() for k, v in b.items()}
             for b in pipeline.make_train_dataset(config, start_step=8).take(3)]
  for i, b in enumerate(resumed):
    for key in b:
      np.testing.assert_array_equal(b[key], batches[8 + i][key], err_msg=f'step {8 + i} {key}')
  assert not np.array_equal(batches[0]['image'], batches[9]['image'])  # epoch 1 is reshuffled


def test_process_sharding(data_dir):
  config = data_support.coco_mini_config(data_dir)
  ids = []
  for p in range(2):
    source = sources.make_source(config, 'train', process_index=p, process_count=2)
    ids.append({int(r['image_id']) for r in source.ordered_dataset()})
  assert not ids[0] & ids[1] and len(ids[0] | ids[1]) == 36
  assert sources.make_source(config, 'train').num_examples // config.input.batch_size == 9
  with pytest.raises(ValueError, match='not divisible'):
    pipeline.make_train_dataset(config, process_count=3)


def test_tf_threads_default_leaves_a_core(data_dir):
  config = data_support.coco_mini_config(data_dir)
  config.input.tf_threads = 0
  import os  # pylint: disable=g-import-not-at-top
  assert pipeline.tf_threads(config) == max(1, len(os.sched_getaffinity(0)) - 1)


def test_eval_input_equals_authors(reference_dir, data_dir):
  """Spec e.1 resize: the authors' network input for the two CrowdPose sample images, and center/scale."""
  config = common.get_config('xs', 'crowdpose')
  config.dataset.name = 'coco_json'
  config.dataset.ann_file = str(data_dir / 'crowdpose_sample/test_crowdpose.json')
  config.dataset.image_dir = str(data_dir / 'crowdpose_sample')
  z = np.load(reference_dir / 'inference_xs_crowdpose_sample.npz')
  seen = 0
  for b in pipeline.make_eval_dataset(config, batch_size=2):
    b = {k: v.numpy() for k, v in b.items()}
    for i in np.flatnonzero(b['_mask']):
      image_id = b['image_id'][i]
      ref = z[f'{image_id}/input'][0].transpose(1, 2, 0)
      assert b['image'][i].shape == ref.shape
      grey = np.abs((b['image'][i] - ref) * STD * 255)
      assert grey.max() <= 2.0 and grey.mean() <= 0.05
      np.testing.assert_array_equal(b['center'][i], z[f'{image_id}/center'])
      np.testing.assert_allclose(b['scale'][i], z[f'{image_id}/scale'], rtol=1e-6)
      np.testing.assert_array_equal(b['image_size'][i], z[f'{image_id}/image_hw'])
      seen += 1
  assert seen == 2


def test_eval_grouping_padding_and_processes(data_dir):
  config = data_support.coco_mini_config(data_dir)
  config.dataset.eval_ann_file = str(data_dir / 'coco_mini/annotations/person_keypoints_val2017.json')
  config.dataset.eval_image_dir = str(data_dir / 'coco_mini/val2017')
  assert pipeline.eval_annotation_file(config) == config.dataset.eval_ann_file
  runs = []
  for p in range(2):
    runs.append([{k: v.numpy() for k, v in b.items()}
                 for b in pipeline.make_eval_dataset(config, process_index=p, process_count=2)])
  assert [b['image'].shape for b in runs[0]] == [b['image'].shape for b in runs[1]]  # same shapes, order
  ids = []
  for batches in runs:
    for b in batches:
      assert b['image'].shape[0] == 4 and b['image'].shape[1] % 64 == 0 and b['image'].shape[2] % 64 == 0
      assert min(b['image'].shape[1:3]) == 256
      pad = ~b['_mask']
      assert (b['image_id'][pad] == -1).all() and (b['image'][pad] == 0).all()
      ids += list(b['image_id'][b['_mask']])
  expected = [im['id'] for im in json.loads(open(config.dataset.eval_ann_file).read())['images']]
  assert sorted(ids) == sorted(expected)


def test_tfds_crowdpose_builder(tmp_path, data_dir):
  """The TFDS builder, offline from a manual directory, feeds both pipelines."""
  manual = tmp_path / 'crowdpose'
  (manual / 'json').mkdir(parents=True)
  shutil.copytree(data_dir / 'crowdpose_sample', manual / 'images')
  for split in ('trainval', 'test'):
    shutil.copy(data_dir / 'crowdpose_sample/test_crowdpose.json', manual / 'json' / f'crowdpose_{split}.json')
  config = common.get_config('xs', 'crowdpose')
  config.dataset.data_dir = str(tmp_path)
  config.input.batch_size = 2
  config.input.tf_threads = 1
  first = next(iter(pipeline.make_train_dataset(config)))
  assert first['heatmaps_1'].shape == (2, 128, 128, 14) and first['joints_0'].numpy()[..., 1].sum() > 0
  assert (tmp_path / 'crowdpose' / '1.0.0').is_dir()
  source = sources.make_source(config, 'train')  # prepared once: no rebuild
  assert source.num_examples == 2 and '2 images, 5 persons' in source.summary_line
  ids = [int(i) for b in pipeline.make_eval_dataset(config, batch_size=2) for i, m in
         zip(b['image_id'].numpy(), b['_mask'].numpy()) if m]
  assert sorted(ids) == [103319, 106848]
  assert pipeline.eval_annotation_file(config) == str(manual / 'json' / 'crowdpose_test.json')


def test_synthetic_dataset_pipelines(tmp_path):
  config = common.get_config('xs', 'crowdpose')
  config.dataset.name = 'synthetic'
  config.dataset.data_dir = str(tmp_path)
  config.input.batch_size = 4
  config.input.tf_threads = 1
  with config.unlocked():
    config.dataset.synthetic_train_images = 12
    config.dataset.synthetic_val_images = 3
  b = next(iter(pipeline.make_train_dataset(config)))
  assert b['image'].shape == (4, 256, 256, 3) and b['joints_0'].numpy()[..., 1].sum() > 0
  ann_file = pipeline.eval_annotation_file(config)
  assert ann_file.endswith('val.json') and len(json.load(open(ann_file))['images']) == 3


def test_bad_files_do_not_stop_an_epoch(tmp_path, data_dir, capsys):
  """skip_bad_samples: missing / truncated files are dropped and counted; PNG variants train fine."""
  src = json.loads((data_dir / 'crowdpose_sample/test_crowdpose.json').read_text())
  entry = next(im for im in src['images'] if im['id'] == 103319)
  ann = next(a for a in src['annotations'] if a['image_id'] == 103319)
  bgr = cv2.imread(str(data_dir / 'crowdpose_sample/103319.jpg'))
  raw = (data_dir / 'crowdpose_sample/103319.jpg').read_bytes()
  (tmp_path / 'truncated.jpg').write_bytes(raw[:len(raw) // 3])
  cv2.imwrite(str(tmp_path / 'gray.png'), bgr[..., 0])
  cv2.imwrite(str(tmp_path / 'rgba.png'), np.concatenate([bgr, bgr[..., :1]], -1))
  cv2.imwrite(str(tmp_path / 'deep.png'), bgr.astype(np.uint16) * 257)
  shutil.copy(data_dir / 'crowdpose_sample/103319.jpg', tmp_path / 'ok.jpg')
  names = ['ok.jpg', 'missing.jpg', 'truncated.jpg', 'gray.png', 'rgba.png', 'deep.png']
  data = dict(src, images=[dict(entry, id=i + 1, file_name=n) for i, n in enumerate(names)],
              annotations=[dict(ann, id=i + 1, image_id=i + 1) for i in range(len(names))])
  (tmp_path / 'ann.json').write_text(json.dumps(data))
  config = common.get_config('xs', 'crowdpose')
  config.dataset.name = 'coco_json'
  config.dataset.ann_file = str(tmp_path / 'ann.json')
  config.dataset.image_dir = str(tmp_path)
  config.dataset.skip_bad_samples = True
  config.input.batch_size = 2
  config.input.tf_threads = 1
  batches = list(pipeline.make_train_dataset(config, num_epochs=2))
  assert len(batches) == 4  # 4 good images per epoch, 2 epochs, batch 2
  assert 'skipped 2 bad images (missing file: 1, truncated file: 1)' in capsys.readouterr().out
