"""`dropj_obst_carracing` TFDS dataset."""
