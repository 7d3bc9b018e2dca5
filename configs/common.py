"""Keys every litepose-jax config has, with their defaults (the authors' CrowdPose recipe, spec d.2).

Derived values are never typed twice: the input size comes from the architecture (`model.arch`), the
number of joints from the keypoint set (`dataset.keypoints`). Library code reads them through
`litepose_jax.from_config`, not from here.
"""

import ml_collections

from litepose_jax.keypoints import MAX_PEOPLE


def get_config(arch: str = 'xs', dataset: str = 'crowdpose') -> ml_collections.ConfigDict:
  """Base config: LitePose-`arch` trained on `dataset` ('crowdpose' | 'coco') with the authors' recipe."""
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.model = ml_collections.ConfigDict()
  c.model.arch = arch                  # 'xs' | 's' | 'm' | 'l' | path to an authors' architecture JSON
  c.model.dtype = 'float32'            # compute dtype; 'bfloat16' = mixed precision, fp32 master weights
  c.model.depthwise_impl = 'auto'      # 'auto' | 'xla' | 'shift' | 'tflite' (see models/depthwise.py)
  c.model.final_init_scale = 1.0       # init scale of the output convs (1.0 = PyTorch's, as the authors)
  c.model.bn_group_size = 0            # train BN statistics over groups of G images (the authors: per-GPU
                                       # BN, 16 images); 0: the whole global batch (synchronised BN)

  c.dataset = ml_collections.ConfigDict()
  c.dataset.name = dataset             # 'crowdpose' | 'coco' (TFDS builders) | 'coco_json' | 'synthetic'
  c.dataset.keypoints = 'crowdpose' if dataset == 'crowdpose' else 'coco'
  c.dataset.data_dir = 'data'          # TFDS data dir; manual downloads under data/<name>/ (README)
  c.dataset.manual_dir = ''            # default: data/<name>
  c.dataset.train_split = 'trainval' if dataset == 'crowdpose' else 'train'
  c.dataset.eval_split = 'test' if dataset == 'crowdpose' else 'validation'
  c.dataset.ann_file = ''              # 'coco_json' only: annotation json
  c.dataset.image_dir = ''             # 'coco_json' only: image folder
  c.dataset.eval_ann_file = ''         # 'coco_json' evaluation json ('': ann_file)
  c.dataset.eval_image_dir = ''        # 'coco_json' evaluation images ('': image_dir)
  c.dataset.synthetic_train_images = 512  # 'synthetic' only: generated once, cached under data/synthetic/
  c.dataset.synthetic_val_images = 64
  c.dataset.synthetic_seed = 0
  c.dataset.synthetic_max_people = 8     # people per image: 1..max
  c.dataset.synthetic_min_torso = 0.12   # smallest torso / short side (largest 0.4)
  c.dataset.skip_bad_samples = False   # skip (and count) unreadable images instead of failing

  c.input = ml_collections.ConfigDict()
  c.input.batch_size = 16              # global batch (the authors: 16 per GPU; see the model configs)
  c.input.size = 0                     # 0: the architecture's img_size
  c.input.shuffle_buffer = 2048
  c.input.tf_threads = 0               # tf.data thread budget; 0: leave one core to JAX (min 1)
  c.input.max_people = MAX_PEOPLE
  c.input.scale_range = (0.75, 1.5)    # aug_scale ~ U[min, max]; > 1 zooms out
  c.input.max_rotation = 30.0          # degrees
  c.input.max_translate = 40           # pixels at scale 1 (·s)
  c.input.flip_prob = 0.5
  c.input.sigma = 2.0                  # Gaussian heatmap sigma at both scales
  c.input.mask_outside_image = True    # the authors: no loss outside the warped image (see data/resample.py)

  c.loss = ml_collections.ConfigDict()
  c.loss.heatmap_factors = (1.0, 1.0)  # per output scale
  c.loss.push_factor = 1e-3
  c.loss.pull_factor = 1e-3
  c.loss.push_type = 'exp'             # the authors'; 'max' = max(0, 1 - |d|), see losses.ae_loss

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = 'adam'
  c.optimizer.lr = 4e-3
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.999
  c.optimizer.eps = 1e-8
  c.optimizer.weight_decay = 0.0
  c.optimizer.schedule = 'multistep'   # 'multistep' | 'cosine' | 'constant'
  c.optimizer.milestones = (350, 480)  # epochs (multistep)
  c.optimizer.decay_factor = 0.1
  c.optimizer.warmup_epochs = 0.0
  c.optimizer.grad_clip = 0.0          # global-norm clip; 0: off
  c.optimizer.ema_decay = 0.0          # EMA of parameters; 0: off (evaluated instead of raw weights when on)

  c.train = ml_collections.ConfigDict()
  c.train.num_epochs = 500
  c.train.log_every_steps = 50
  c.train.eval_every_epochs = 0        # 0: only at the end
  c.train.init_from = ''               # converted authors' weights (checkpoint dir) to fine-tune from

  # Common keys every config has (the training issue): steps override epochs when > 0.
  c.num_train_steps = 0
  c.checkpoint_every_steps = 1000
  c.keep_checkpoints = 3

  # Weight-sharing supernet training (docs/nas.md "Supernet training"; litepose_jax.nas). When enabled,
  # model.arch is not read: the network is the supernet at its maximum widths (nas.space.LARGEST).
  c.nas = ml_collections.ConfigDict()
  c.nas.enabled = False
  c.nas.rule = 'uniform'               # subnets per step: 'uniform' (the authors': one random subnet) |
                                       # 'sandwich' (largest + smallest + num_random random, grads summed)
  c.nas.num_random = 1                 # 'sandwich' only
  c.nas.resolutions = (256, 320, 384, 448, 512)  # input size of each global batch: uniform over these
  c.nas.reorder = True                 # with train.init_from: channels sorted by importance (nas spec §3)
  c.nas.eval_resolution = 0            # the largest subnet is evaluated at this size (0: max of resolutions)
  c.nas.calibration_batches = 4        # training batches its BN statistics are re-calibrated on first

  c.eval = ml_collections.ConfigDict()
  c.eval.batch_size = 8
  c.eval.flip_test = True
  c.eval.scales = (1.0,)
  c.eval.max_people = MAX_PEOPLE
  c.eval.nms_kernel = 5
  c.eval.detection_threshold = 0.1
  c.eval.tag_threshold = 1.0
  c.eval.adjust = True
  c.eval.refine = True
  c.eval.tie_break = 'munkres'         # 'munkres' (the authors' assignment, default) | 'distance'
  c.eval.max_images = 0                # 0: the whole split
  c.eval.num_worst_images = 8          # PNGs of the worst images written by evaluate.py
  c.eval.worst_image_views = ''        # add 'heatmaps' and/or 'tags' (comma-separated) to those PNGs
  return c
