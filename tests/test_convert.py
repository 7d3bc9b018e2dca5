"""Weight converter: name/shape mapping, clear errors, the CLI and the checkpoint it writes."""


import jax
import numpy as np
import pytest

from litepose_jax import checkpoint, convert, models


@pytest.fixture(scope='module')
def reference_sd(reference_dir):
  return convert.load_state_dict(reference_dir / 'litepose_xs_reference.npz')


def test_every_authors_key_is_mapped_once(reference_sd):
  keys = [k for k, *_ in convert.key_map(models.ARCHS['xs'])]
  assert len(keys) == len(set(keys))
  expected = {k for k in reference_sd if not k.endswith('num_batches_tracked')}
  assert set(keys) == expected


def test_round_trip_through_flax_layout(reference_sd):
  variables = convert.torch_to_flax(reference_sd, 'xs', 14)
  back = convert.flax_to_torch(variables, 'xs')
  for k, v in back.items():
    np.testing.assert_array_equal(v, reference_sd[k], err_msg=k)


def test_layouts(reference_sd):
  v = convert.torch_to_flax(reference_sd, 'xs', 14)
  w = reference_sd['stage.0.0.depth_conv.0.weight']  # (C, 1, 7, 7)
  np.testing.assert_array_equal(v['params']['stage1_block0']['depthwise']['conv']['kernel'][2, 5],
                                w[:, 0, 2, 5])
  w = reference_sd['first.0.0.weight']  # (O, I, 3, 3) → (3, 3, I, O)
  np.testing.assert_array_equal(v['params']['stem_conv']['conv']['kernel'][1, 2, 0], w[:, 0, 1, 2])
  w = reference_sd['deconv_raw.1.weight']  # (I, O, 4, 4) → (4, 4, I, O), not flipped
  np.testing.assert_array_equal(v['params']['deconv_raw1']['kernel'][3, 0], w[:, :, 3, 0])
  np.testing.assert_array_equal(v['batch_stats']['deconv_bn2']['var'],
                                reference_sd['deconv_bnrelu.2.0.running_var'])


def test_missing_key_is_named(reference_sd):
  sd = dict(reference_sd)
  del sd['stage.2.3.point_conv.1.running_var']
  with pytest.raises(convert.ConversionError, match=r"missing key 'stage.2.3.point_conv.1.running_var'"):
    convert.torch_to_flax(sd, 'xs', 14)


def test_shape_mismatch_names_key_and_shapes(reference_sd):
  # XS weights into S: stage 4 is the first place the widths differ (80 vs 120 channels).
  with pytest.raises(convert.ConversionError, match=r"shape mismatch at 'stage.3.0.point_conv.0.weight': "
                     r"expected \(120, 288, 1, 1\).*found \(80, 288, 1, 1\)"):
    convert.torch_to_flax(reference_sd, 's', 14)
  with pytest.raises(convert.ConversionError, match=r"final_refined.0.conv.3.weight.*\(34, 24, 1, 1\)"):
    convert.torch_to_flax(reference_sd, 'xs', 17)


def test_unexpected_key_and_ddp_prefix(reference_sd):
  sd = {'module.' + k: v for k, v in reference_sd.items()}
  convert.torch_to_flax(sd, 'xs', 14)  # DDP-saved checkpoints load
  sd['module.extra.weight'] = np.zeros(3)
  with pytest.raises(convert.ConversionError, match="unexpected key 'extra.weight'"):
    convert.torch_to_flax(sd, 'xs', 14)


def test_pth_without_torch_gives_clear_message(tmp_path):
  try:
    import torch  # noqa: F401
  except ImportError:
    path = tmp_path / 'model.pth'
    path.write_bytes(b'not used')
    with pytest.raises(RuntimeError, match='needs PyTorch.*npz'):
      convert.load_state_dict(path)
  else:  # torch present: a real .pth must load through torch.load(weights_only=True)
    sd = {'a': torch.ones(2)}
    torch.save(sd, tmp_path / 'model.pth')
    np.testing.assert_array_equal(convert.load_state_dict(tmp_path / 'model.pth')['a'], np.ones(2))


def test_cli_writes_checkpoint_that_rebuilds_the_model(reference_dir, tmp_path, reference_sd, capsys):
  out = tmp_path / 'ckpt'
  argv = [f'--torch={reference_dir / "litepose_xs_reference.npz"}', '--arch=xs', '--num_keypoints=14',
          f'--out={out}']
  assert convert.main(argv) == 0
  assert '1,675,552 parameters' in capsys.readouterr().out
  loaded = checkpoint.load_model(out)
  assert loaded.model.arch == models.ARCHS['xs'] and loaded.model.num_keypoints == 14
  assert loaded.keypoint_set.name == 'crowdpose'
  want = convert.torch_to_flax(reference_sd, 'xs', 14)
  for a, b in zip(jax.tree.leaves(loaded.variables), jax.tree.leaves(want)):
    np.testing.assert_array_equal(a, b)
  # A bad file: non-zero exit and a one-line error, no traceback.
  assert convert.main([argv[0].replace('litepose_xs_reference', 'nope'), *argv[1:]]) == 1
  err = capsys.readouterr().err
  assert 'nope.npz: no such file' in err and len(err.splitlines()) == 1
  # The same --out again: a clear message (no orbax StepAlreadyExistsError), the checkpoint untouched.
  stamp = sorted((p.name, p.stat().st_mtime_ns) for p in out.rglob('*'))
  assert convert.main(argv) == 1
  err = capsys.readouterr().err
  assert err.startswith(f'error: {out}: already exists') and '--overwrite' in err and len(err.splitlines()) == 1
  assert sorted((p.name, p.stat().st_mtime_ns) for p in out.rglob('*')) == stamp
  # --overwrite replaces it; the old dashed spelling still works (with a note) for one release.
  assert convert.main([*argv[:2], '--num-keypoints', '14', argv[3], '--overwrite']) == 0
  assert 'note: --num-keypoints is now --num_keypoints' in capsys.readouterr().err
  assert checkpoint.load_model(out).model.num_keypoints == 14
  assert not list(tmp_path.glob('.*partial'))   # nothing left beside it
  # A folder that is not a checkpoint is never replaced; a missing flag is one line, exit 2.
  (tmp_path / 'notes').mkdir()
  (tmp_path / 'notes' / 'a.txt').write_text('mine')
  assert convert.main([*argv[:3], f'--out={tmp_path / "notes"}', '--overwrite']) == 1
  assert 'is not a model checkpoint; not replaced' in capsys.readouterr().err
  assert (tmp_path / 'notes' / 'a.txt').read_text() == 'mine'
  assert convert.main(argv[:2]) == 2
  assert capsys.readouterr().err == 'error: --num_keypoints is required (see --help)\n'
