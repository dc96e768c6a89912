"""`dropj_carracing` TFDS dataset."""
