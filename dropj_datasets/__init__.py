"""DROPJ as RLDS: importing this package registers the TFDS builders.

    import dropj_datasets
    import tensorflow_datasets as tfds
    ds = tfds.load('dropj_carracing', data_dir=...)        # config 'real'
    ds = tfds.load('dropj_carracing/dream', data_dir=...)

Importing it does not import TensorFlow (TFDS loads it lazily).
"""

from dropj_datasets import schema
from dropj_datasets.dropj_carracing.dropj_carracing_dataset_builder import Builder as DropjCarracing
from dropj_datasets.dropj_obst_carracing.dropj_obst_carracing_dataset_builder import Builder as DropjObstCarracing

__all__ = ["schema", "DropjCarracing", "DropjObstCarracing"]
