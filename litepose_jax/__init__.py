"""litepose-jax: LitePose (CVPR 2022) bottom-up multi-person pose estimation in JAX/Flax.

Shapes in docstrings use one legend across the package (docs/shapes.md): B batch, H/W image or map size,
I training input side, R0/R1 = I/4, I/2 map sides, K joints, L tag dim, P packed people (30), N candidates
per joint, S decoder person slots, M assignment side, G ground-truth people, D detections, C channels.
"""

__version__ = '0.1.0'
