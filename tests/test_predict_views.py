"""predict.py's views, camera/stream mode, tracking and bad images, run in-process on a tiny model; the
Predictor's maps; the worst-image views of evaluate.

Oracles: inference.test_time_maps called directly (the maps the views draw), the frame count and pixels of
the written video, the true person of each detection in the tracker's synthetic crossing video
(tests/inference/test_track.py), and the bytes of a truncated file.
"""

import json
import pathlib
import sys

from absl import flags
import cv2
import jax
import numpy as np
import pytest

from configs import tiny
from litepose_jax import checkpoint, eval_lib, evaluation, inference, models, visualize
from litepose_jax import keypoints as kp_lib
from litepose_jax.inference import track

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import predict  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position

sys.path.insert(0, str(REPO / 'tests' / 'inference'))
import test_track  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position

KS = kp_lib.CROWDPOSE


@pytest.fixture(scope='module')
def tiny_model(tmp_path_factory):
  model = models.create(tiny.TINY_ARCH, 14, final_init_scale=30.0)  # scaled: the maps have peaks
  variables = model.init(jax.random.PRNGKey(1), np.zeros((1, 64, 64, 3), np.float32), train=False)
  ckpt = checkpoint.save_model(tmp_path_factory.mktemp('views') / 'ckpt', variables,
                               checkpoint.model_meta(model.arch, 14))
  return model, variables, ckpt


@pytest.fixture(scope='module')
def frames(data_dir):
  """Six 128x96 frames of a sample photo sliding right by 3 px a frame (BGR, as OpenCV writes them)."""
  image = cv2.resize(cv2.imread(str(data_dir / 'crowdpose_sample' / '103319.jpg')), (128, 96))
  return [np.roll(image, 3 * i, axis=1) for i in range(6)]


def _run(monkeypatch, capsys, args):
  """predict.py's main in this process: (exit code, stdout, stderr)."""
  monkeypatch.setenv('LITEPOSE_HOST_TUNING', '0')   # keep this process's XLA_FLAGS / allocator as they are
  flags.FLAGS.unparse_flags()
  flags.FLAGS(['predict.py'] + args)
  code = predict.main([])
  out, err = capsys.readouterr()
  return code, out, err


def _write_video(path, frames, fourcc='MJPG'):
  writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, frames[0].shape[1::-1])
  for f in frames:
    writer.write(f)
  writer.release()
  return path


def test_predictor_maps_are_the_decoders_input(tiny_model, data_dir):
  """with_maps=True returns the aggregated maps (test_time_maps on the same input) and the same people."""
  model, variables, _ = tiny_model
  predictor = inference.Predictor(model, variables, KS, 64, batch_size=1)
  image = inference.read_rgb(data_dir / 'crowdpose_sample' / '103319.jpg')
  plain, = predictor.predict([image])
  with_maps, = predictor.predict([image], with_maps=True)
  assert plain.maps is None
  np.testing.assert_array_equal(with_maps.keypoints, plain.keypoints)
  inputs, center, scale = predictor.prepare(image)
  heat, tags = inference.test_time_maps(lambda x: model.apply(variables, x, train=False),
                                        [inputs[0][None]], KS.flip_index)
  np.testing.assert_allclose(with_maps.maps.heatmaps, np.asarray(heat)[0], atol=1e-5)
  np.testing.assert_allclose(with_maps.maps.tags, np.asarray(tags)[0], atol=1e-5)
  np.testing.assert_array_equal(with_maps.maps.center, center)
  np.testing.assert_array_equal(with_maps.maps.scale, scale)


def test_views_and_a_truncated_image(tiny_model, data_dir, tmp_path, monkeypatch, capsys):
  """A folder with a good and a truncated JPEG: the good one gets its views panel, the truncated one is
  named, skipped and summarised; alone, it stops the run with one line and writes nothing."""
  _, _, ckpt = tiny_model
  src = tmp_path / 'in'
  src.mkdir()
  raw = (data_dir / 'crowdpose_sample' / '103319.jpg').read_bytes()
  (src / '103319.jpg').write_bytes(raw)
  (src / 'cut.jpg').write_bytes(raw[:len(raw) // 2])
  code, out, err = _run(monkeypatch, capsys, [f'--ckpt={ckpt}', f'--input={src}', f'--output={tmp_path / "o"}',
                                              '--draw=skeleton,heatmaps,tags', '--batch_size=1'])
  assert code == 0, err
  assert 'cut.jpg: truncated JPEG' in err and 'skipped 1 of 2 images that could not be read: cut.jpg' in out
  assert sorted(p.name for p in (tmp_path / 'o').iterdir()) == ['103319_views.png', 'predictions.json']
  # The panel: three titled 480-px tiles on top, two rows of tiles per joint view below.
  panel = cv2.imread(str(tmp_path / 'o' / '103319_views.png'))
  assert panel.shape[1] == 3 * 480 + 2 * 6 and panel.shape[0] > 22 + 320 + 34 + 4 * (22 + 100)
  people = json.loads((tmp_path / 'o' / 'predictions.json').read_text())
  assert people and {p['file_name'] for p in people} == {'103319.jpg'}
  assert all(p['score'] >= 0.15 for p in people) and all('track_id' not in p for p in people)

  code, out, err = _run(monkeypatch, capsys, [f'--ckpt={ckpt}', f'--input={src / "cut.jpg"}',
                                              f'--output={tmp_path / "single"}'])
  assert code == 1 and err.strip().splitlines() == [f'error: {src / "cut.jpg"}: truncated JPEG (no '
                                                    'end-of-image marker)']
  assert not (tmp_path / 'single').exists()
  code, _, err = _run(monkeypatch, capsys, [f'--ckpt={ckpt}', f'--input={src}', f'--output={tmp_path / "x"}',
                                            '--draw=skeleton,heat'])
  assert code == 2 and err.strip() == "error: --draw: unknown view 'heat' in 'skeleton,heat'; choose any of " \
                                      'skeleton,heatmaps,tags'


def test_stream_mode_writes_every_frame_with_fps_and_ids(tiny_model, frames, tmp_path, monkeypatch, capsys):
  """camera:<file> reads a video as a live stream: every frame written, the fps box drawn on it, people
  with track ids; a stream that stops early or does not open is one error line and exit 1."""
  _, _, ckpt = tiny_model
  clip = _write_video(tmp_path / 'clip.avi', frames)
  code, out, err = _run(monkeypatch, capsys, [f'--ckpt={ckpt}', f'--input=camera:{clip}',
                                              f'--output={tmp_path / "live.mp4"}'])
  assert code == 0, err
  assert out.startswith('6 images, ') and 'track ids' in out
  cap = cv2.VideoCapture(str(tmp_path / 'live.mp4'))
  written = []
  while True:
    ok, f = cap.read()
    if not ok:
      break
    written.append(f)
  assert len(written) == 6 and written[0].shape == frames[0].shape
  for f in written[2:]:   # after the first two frames the fps is known: a black box with white text
    box = f[:16, :60].astype(int)
    assert np.mean(box.max(-1) < 40) > 0.5 and (box.min(-1) > 200).sum() > 10
  people = json.loads((tmp_path / 'live.json').read_text())
  assert {p['frame'] for p in people} == set(range(6)) and all('track_id' in p for p in people)

  broken = tmp_path / 'broken.avi'
  broken.write_bytes(clip.read_bytes()[:len(clip.read_bytes()) // 2])
  code, _, err = _run(monkeypatch, capsys, [f'--ckpt={ckpt}', f'--input=camera:{broken}',
                                            f'--output={tmp_path / "b"}'])
  lines = [line for line in err.splitlines() if line.startswith('error')]
  assert code == 1 and len(lines) == 1 and 'the stream stopped after' in lines[0] and 'of 6 frames' in lines[0]
  code, _, err = _run(monkeypatch, capsys, [f'--ckpt={ckpt}', f'--input=camera:{tmp_path}/none.avi',
                                            f'--output={tmp_path / "n"}'])
  assert code == 1 and err.strip() == f'error: camera:{tmp_path}/none.avi: cannot open the file or URL'
  code, _, err = _run(monkeypatch, capsys, [f'--ckpt={ckpt}', f'--input=camera:{clip}', '--noshow'])
  assert code == 1 and 'no window can be shown here; give --output' in err   # no display in the tests


def test_annotator_ids_follow_people_across_crossings():
  """predict.Annotator on the tracker's crossing video: the JSON's track_id follows the true person (no
  switch), every person is drawn in its id's colour, and --track off writes no ids."""
  annotator = predict.Annotator(KS, ('skeleton',), 0.0, False, track.Tracker(KS.sigmas))
  ids_of, image, matched, checked = {}, np.zeros((360, 640, 3), np.uint8), 0, 0
  for f, (kp, truth) in enumerate(test_track._video(frames=40)):
    drawing, people = annotator(image, inference.Prediction(kp, kp[..., 2].mean(-1)), f, {'frame': f})
    for p, r in zip(truth, people):
      ids_of.setdefault(int(p), set()).add(r['track_id'])
    # The last person drawn is on top: its confident joints (near-opaque discs) show its id's colour.
    last = np.reshape(people[-1]['keypoints'], (-1, 3))
    color = np.array(visualize.track_colors([people[-1]['track_id']])[0])
    for x, y, _ in last[last[:, 2] > 0.9]:
      checked += 1
      matched += np.abs(drawing[int(round(y)), int(round(x))].astype(int) - color).max() <= 40
  assert all(len(v) == 1 for v in ids_of.values()), ids_of
  assert len(set().union(*ids_of.values())) == 4
  assert checked > 50 and matched / checked > 0.9, (matched, checked)
  untracked = predict.Annotator(KS, ('skeleton',), 0.0, False, None)
  _, people = untracked(image, inference.Prediction(kp, kp[..., 2].mean(-1)), 0, {})
  assert all('track_id' not in p for p in people)


def test_worst_images_can_show_the_maps(tiny_model, data_dir, tmp_path):
  """eval_lib.write_worst with views: the pair, and under it the heatmap tiles of the input's maps."""
  model, variables, _ = tiny_model
  predictor = inference.Predictor(model, variables, KS, 64, batch_size=1)
  image = inference.read_rgb(data_dir / 'crowdpose_sample' / '103319.jpg')
  inputs, center, scale = predictor.prepare(image)
  worst = eval_lib.Worst(0.1, 103319, np.zeros((0, 14, 3)), np.zeros(0), inference.to_uint8(inputs[0]), center,
                         scale, inputs[0])
  gt = evaluation.load_ground_truth(data_dir / 'crowdpose_sample' / 'test_crowdpose.json')
  plain, = eval_lib.write_worst(str(tmp_path / 'a'), [worst], gt, KS)
  viewed, = eval_lib.write_worst(str(tmp_path / 'b'), [worst], gt, KS, ('heatmaps',), predictor)
  plain, viewed = cv2.imread(plain), cv2.imread(viewed)
  h, w = inputs[0].shape[:2]
  u = -(-480 // h)
  assert plain.shape == (h * u + 24, 2 * w * u + 8, 3)
  np.testing.assert_array_equal(viewed[:plain.shape[0], :plain.shape[1]], plain)   # the pair, unchanged
  assert viewed.shape[0] > plain.shape[0] + 22 + h * u


def test_min_score_hides_weak_people_and_json_all_keeps_them():
  kp, _ = next(test_track._video())
  pred = inference.Prediction(kp[:3], np.array([0.9, 0.05, 0.7]))
  image = np.zeros((360, 640, 3), np.uint8)
  _, people = predict.Annotator(KS, ('skeleton',), 0.15, False, track.Tracker(KS.sigmas))(image, pred, 0, {})
  assert [p['score'] for p in people] == [0.9, 0.7] and [p['track_id'] for p in people] == [0, 1]
  _, people = predict.Annotator(KS, ('skeleton',), 0.15, True, track.Tracker(KS.sigmas))(image, pred, 0, {})
  assert [p['score'] for p in people] == [0.9, 0.05, 0.7]     # the decoder's order
  assert [p.get('track_id') for p in people] == [0, None, 1]
