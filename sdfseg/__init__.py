"""sdfseg: consistent 3D instance/semantic segmentation from inconsistent 2D labels.

An object-compositional signed distance field (one SDF channel per object,
channel 0 = background) trained with the ClusteringSDF losses on noisy per-frame
2D labels, plus evaluation (PQ^scene, mIoU, edge accuracy) and mesh export.
"""

__version__ = "0.1.0"
