"""Data: records, TFDS builders, tf.data pipelines (train / eval) and the synthetic dataset.

TensorFlow lives only in this package (and export); models, losses, decoding and evaluation never import it.

  coco_format.py    the one JSON reader and COCO-format keypoint validator (training and evaluation)
  records.py        the per-image record format and the COCO-format json reader (images, ignore regions)
  image_files.py    header / truncation checks of image files (no decoding)
  ignore_regions.py COCO ignore regions (crowd, no-keypoint persons) as run-length encodings
  builders/         TFDS builders 'crowdpose' and 'coco_keypoints' (offline, manual-download directory)
  sources.py        which records a config names, streamed per epoch (json in memory or TFDS)
  geometry.py       crop / test-resize affines (float64, as the authors)
  resample.py       bilinear warps and mask warps with cv2.warpAffine semantics, fast on CPU
  transforms.py     decoding and the dict → dict ops of the training / evaluation inputs
  targets.py        heatmaps, masks, tag joints; make_train_example (one sample, fixed augmentation)
  pipeline.py       make_train_dataset (exact resume), make_eval_dataset, eval_annotation_file
  synthetic.py      the deterministic synthetic multi-person set (demo and tests)
  show.py           `python -m litepose_jax.data.show`: PNGs of augmented samples with their targets
"""
