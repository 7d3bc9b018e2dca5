"""Export for phones: TFLite (network alone, or network + decoder), fp32 / fp16 / int8; optional ONNX.

  python -m litepose_jax.export --ckpt=CKPT --format=tflite [--with_decoder] [--quantize=none|fp16|int8] \
      --out=FILE

Modules: graphs.py (the JAX functions exported, TF-free), tflite.py (jax2tf → TFLite converter, the only
TensorFlow user; flatbuffer op lists and metadata), calibration.py (representative images for int8),
runner.py (run a file with ai-edge-litert, no TF), predictor.py (the test path around a file, for
predict.py --model), onnx.py (the network as an ONNX graph, written from the variables). See docs/export.md.
"""
