"""`dropj_carracing`: the DROPJ Car Racing rollouts (Dataset R and Dataset D) as RLDS."""

from dropj_datasets.builder import DropjBuilder


class Builder(DropjBuilder):
    """Human keyboard rollouts (`real`, the default) and world-model rollouts (`dream`) of Car Racing."""

    DATASET = "dropj_carracing"
