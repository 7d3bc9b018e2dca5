"""Associative-embedding decoding: aggregated maps → people, jitted, batched, fixed shapes.

  grouping.py  NMS, top-k candidates, grouping in the keypoint set's joint order (spec e.4-e.9)
  munkres.py   the exact assignment solver, replaying munkres 1.1.4's step order (its tie rule decides
               the grouping; not a general-purpose solver)
  refine.py    adjust (quarter offset) and refine (fill missing joints)
"""

from litepose_jax.decode.grouping import (Candidates, DecodeConfig, Persons, group, nms, parse, parse_jit,
                                          parse_maps, to_joint_major, top_k)
