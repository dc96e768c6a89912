"""`dropj_carracing`'s version: logged in its release notes and bumped whenever its features change."""

from dropj_datasets.dropj_carracing.dropj_carracing_dataset_builder import Builder

# SHA-256 of every config's features (docs left out) at each version; a new version adds a line.
FEATURES = {
    "1.0.0": "0d5ce548c8506d2e59a2a79a91dea9f035134c082c350cfbf254619b6d68aa49",
    "1.1.0": "0d5ce548c8506d2e59a2a79a91dea9f035134c082c350cfbf254619b6d68aa49",  # same features, more metadata
}


def test_the_version_is_logged_and_bumped_with_the_features():
    assert Builder.version_problems(FEATURES) == []
