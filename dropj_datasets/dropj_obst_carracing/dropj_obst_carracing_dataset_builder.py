"""`dropj_obst_carracing`: the DROPJ Obstacle Car Racing rollouts and justified preferences as RLDS."""

import tensorflow_datasets as tfds

from dropj_datasets.builder import DropjBuilder


class Builder(DropjBuilder):
    """Real and dream rollouts of Obstacle Car Racing, chuckholes only (`chuckc_*`) or with cars (`chuckccar_*`),
    and one person's justified preferences per variant."""

    DATASET = "dropj_obst_carracing"
    # Bump on every change of what a built config holds (its features or their meaning), log it below,
    # and update the features fingerprint in the test beside this file.
    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "First release: lossless RLDS episodes of Datasets R and D for the chuckhole and the "
                 "chuckhole-and-car variants, and the multi-justification preferences with labels.",
        "1.1.0": "Added chuckc_queries and chuckccar_queries: the obstacle preference queries with their videos.",
    }
