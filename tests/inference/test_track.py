"""The tracker on a synthetic video of stick people whose paths cross: id switches and lost tracks.

Oracle: the ground truth person of every detection (the detections are the true keypoints + noise, in a
shuffled order, some dropped), so an id switch is a change of track id along one true person.
"""

import numpy as np

from litepose_jax import keypoints as kp_lib
from litepose_jax.inference import track

# A stick figure in CrowdPose joint order around (0, 0), ~100 px tall: shoulders, elbows, wrists, hips,
# knees, ankles (left/right), head, neck.
_FIGURE = np.array([[-15, -30], [15, -30], [-22, -5], [22, -5], [-25, 18], [25, 18], [-10, 15], [10, 15],
                    [-12, 45], [12, 45], [-12, 72], [12, 72], [0, -52], [0, -38]], np.float64)


def _video(frames=80, seed=0):
  """Four people: two cross head-on along the same line, two cross diagonally; all the same size."""
  paths = [((40, 150), (600, 150)), ((600, 150), (40, 150)), ((60, 60), (580, 300)), ((580, 60), (60, 300))]
  rs = np.random.RandomState(seed)
  for f in range(frames):
    a = f / (frames - 1)
    people, truth = [], []
    for p, (start, end) in enumerate(paths):
      if rs.uniform() < 0.05:  # a missed detection
        continue
      centre = (1 - a) * np.array(start) + a * np.array(end)
      xy = _FIGURE + centre + rs.normal(0, 2.0, _FIGURE.shape)
      val = np.where(rs.uniform(size=len(xy)) < 0.1, 0.0, rs.uniform(0.3, 1.0, len(xy)))
      people.append(np.concatenate([xy, val[:, None]], -1))
      truth.append(p)
    order = rs.permutation(len(people))
    yield np.array(people)[order], np.array(truth)[order]


def _run(tracker, video):
  ids_of = {}
  switches = 0
  for kp, truth in video:
    ids = tracker.update(kp, kp[..., 2].mean(-1))
    assert len(set(ids.tolist())) == len(ids)  # one id per person in a frame
    for p, i in zip(truth, ids):
      if p in ids_of and ids_of[p][-1] != i:
        switches += 1
      ids_of.setdefault(p, []).append(int(i))
  lost = sum(len(set(v)) - 1 for v in ids_of.values())
  return switches, lost, ids_of


def test_ids_survive_crossings():
  switches, lost, ids_of = _run(track.Tracker(kp_lib.CROWDPOSE.sigmas), _video())
  print(f'id switches {switches}, extra ids {lost}')
  assert switches == 0 and lost == 0, ids_of
  assert sorted(v[0] for v in ids_of.values()) == [0, 1, 2, 3]


def test_without_velocity_the_crossing_swaps_ids():
  """The check can fail: a tracker without the velocity guess (max_age 0 and prediction off) swaps."""
  class NoVelocity(track.Tracker):
    def _predicted(self, t):
      return t.keypoints
  switches, _, _ = _run(NoVelocity(kp_lib.CROWDPOSE.sigmas), _video())
  print('without velocity: id switches', switches)
  assert switches > 0


def test_empty_frames_and_memory():
  t = track.Tracker(max_age=2)
  one = next(_video())[0][:1]
  assert t.update(one).tolist() == [0]
  assert t.update(np.zeros((0, 14, 3))).tolist() == []
  assert t.update(one).tolist() == [0]  # back after one empty frame: same id
  for _ in range(3):
    t.update(np.zeros((0, 14, 3)))
  assert t.update(one).tolist() == [1]  # gone longer than max_age: a new id
