"""train/report.py: the metric files (read back by TensorBoard's own reader) and the parameter table."""

import jax
from tensorboard.backend.event_processing import event_accumulator

from litepose_jax import models
from litepose_jax.train import report


def test_parameter_overview_counts_match_the_authors_model():
  # Spec a.5: the authors' XS (K=14) has 1,675,552 parameters (torch count, BN affine included).
  model = models.create('xs', 14)
  shapes = jax.eval_shape(lambda: models.init_variables(model, jax.random.key(0)))
  text = report.parameter_overview(shapes['params'], shapes['batch_stats'])
  assert 'total: 1,675,552 parameters' in text
  assert 'stage4_block9' in text


def test_event_file_reads_back_in_tensorboard(tmp_path):
  writer = report.MetricWriter(tmp_path)
  writer.write_scalars(3, {'train/loss': 0.5, 'eval/AP': 0.25})
  writer.write_scalars(123456789, {'train/loss': 0.125})
  writer.close()
  assert len(list(tmp_path.glob('events.out.tfevents.*'))) == 1
  events = event_accumulator.EventAccumulator(str(tmp_path))   # TensorBoard's own reader
  events.Reload()
  got = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()['scalars']}
  assert got == {'train/loss': [(3, 0.5), (123456789, 0.125)], 'eval/AP': [(3, 0.25)]}
  lines = (tmp_path / 'metrics.jsonl').read_text().splitlines()
  assert len(lines) == 2 and '"eval/AP": 0.25' in lines[0]
