"""`dropj_carracing`'s version: logged in its release notes and bumped whenever its features change."""

import tensorflow_datasets as tfds

from dropj_datasets.builder import features_fingerprint
from dropj_datasets.dropj_carracing.dropj_carracing_dataset_builder import Builder

# SHA-256 of every config's features (docs left out) at each version; a new version adds a line.
FEATURES = {
    "1.0.0": "0d5ce548c8506d2e59a2a79a91dea9f035134c082c350cfbf254619b6d68aa49",
}


def test_the_version_is_the_newest_release_note():
    versions = sorted(map(tfds.core.Version, Builder.RELEASE_NOTES))
    assert versions[-1] == Builder.VERSION, f"RELEASE_NOTES has no entry for {Builder.VERSION}"


def test_features_changed_only_with_a_new_version():
    assert str(Builder.VERSION) in FEATURES, f"record the features fingerprint of {Builder.VERSION} here"
    assert features_fingerprint(Builder.DATASET) == FEATURES[str(Builder.VERSION)], (
        f"the features of {Builder.DATASET} changed: bump Builder.VERSION, say what changed in RELEASE_NOTES, "
        "and add the new fingerprint to FEATURES")
