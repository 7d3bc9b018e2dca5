"""Training: the loop and its parts.

  loop.py      `train_and_evaluate(config, workdir)`: set-up, restore-or-init, the loop
  step.py      one optimizer step (two compiled programs: gradients, update)
  state.py     TrainState (step, params, batch_stats, optimizer and EMA state)
  optim.py     Adam / AdamW with the authors' schedules
  losses.py    masked heatmap MSE and the associative-embedding push/pull loss
  sharding.py  the ('data',) mesh: the only module that names Mesh / PartitionSpec
  report.py    metric files (TensorBoard + JSON lines), progress, parameter table
"""
