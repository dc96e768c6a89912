"""`dropj_carracing`: the DROPJ Car Racing rollouts (Dataset R and Dataset D) and human feedback as RLDS."""

import tensorflow_datasets as tfds

from dropj_datasets.builder import DropjBuilder


class Builder(DropjBuilder):
    """Human keyboard rollouts (`real`, the default), world-model rollouts (`dream`), preference queries,
    preferences and sketches of Car Racing."""

    DATASET = "dropj_carracing"
    # Bump on every change of what a built config holds (its features or their meaning), log it below,
    # and update the features fingerprint in the test beside this file.
    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "First release: lossless RLDS episodes of Datasets R and D, the 600 preference queries with "
                 "their videos, the DROP / DROPe / DROPJ responses with labels, and the ReQueST and DROS "
                 "sketches.",
        "1.1.0": "`request` keeps ReQueST's companion files whole when they are present: "
                 "request_all_query_times_*, request_rew_perf_evals[_clean]_* and default_init_obses_ep600enc_15.pkl.",
    }
