"""The DROPJ environments, registered with gymnasium on import.

    import gymnasium as gym
    import dropj_datasets.envs  # registers the ids below

    env = gym.make("DropjCarRacing-v0")                          # 84x84 frames
    env = gym.make("DropjObstCarRacing-v0", mode="chuckccar")    # 128x128, chuckholes and NPC cars
    obs, info = env.reset(seed=3)                               # gym 0.20 seeding: the authors' track 3

Both carry gymnasium's 1000-step `TimeLimit`. `gym.make("dropj_datasets.envs:DropjCarRacing-v0")`
works without the import. Semantics and measured differences from the authors' gym 0.20
environments: docs/environments.md.
"""

from __future__ import annotations

import gymnasium

from dropj_datasets.envs.car_racing import MAX_EPISODE_STEPS
from dropj_datasets.schema import CARRACING_ID, OBST_CARRACING_ID  # each env's identity: schema.ENVS

DREAM_ID = "DropjDream-v0"  # the learned world model (`dropj.models.dream`; needs torch and checkpoints)


def _register() -> None:
    registered = gymnasium.envs.registration.registry
    if CARRACING_ID not in registered:
        gymnasium.register(CARRACING_ID, entry_point="dropj_datasets.envs.car_racing:DropjCarRacing",
                           max_episode_steps=MAX_EPISODE_STEPS)
    if DREAM_ID not in registered:  # torch is imported only when the dream is made
        gymnasium.register(DREAM_ID, entry_point="dropj.models.dream:DropjDream", max_episode_steps=MAX_EPISODE_STEPS)
    if OBST_CARRACING_ID not in registered:
        gymnasium.register(OBST_CARRACING_ID, entry_point="dropj_datasets.envs.obst_car_racing:DropjObstCarRacing",
                           max_episode_steps=MAX_EPISODE_STEPS, kwargs={"mode": "chuckccar"})


_register()
