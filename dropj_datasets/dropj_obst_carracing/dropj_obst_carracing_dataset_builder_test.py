"""`dropj_obst_carracing`'s version: logged in its release notes and bumped whenever its features change."""

from dropj_datasets.dropj_obst_carracing.dropj_obst_carracing_dataset_builder import Builder

# SHA-256 of every config's features (docs left out) at each version; a new version adds a line.
FEATURES = {
    "1.0.0": "2d0b8bdea49d484be8684529d9678c200fb3ada82884f467eff8147b0203fa46",
    "1.1.0": "aed4d922ed94be58de9bc40ef8c9a90d1d34a193300ad3c13ecb31ec7de66a6f",
}


def test_the_version_is_logged_and_bumped_with_the_features():
    assert Builder.version_problems(FEATURES) == []
