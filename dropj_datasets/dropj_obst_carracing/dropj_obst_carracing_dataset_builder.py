"""`dropj_obst_carracing`: the DROPJ Obstacle Car Racing rollouts as RLDS."""

from dropj_datasets.builder import DropjBuilder


class Builder(DropjBuilder):
    """Real and dream rollouts of Obstacle Car Racing, chuckholes only (`chuckc_*`) or with cars (`chuckccar_*`)."""

    DATASET = "dropj_obst_carracing"
