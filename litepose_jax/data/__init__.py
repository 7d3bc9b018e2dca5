"""Data: records, TFDS builders, tf.data pipelines (train / eval) and the synthetic dataset."""
