"""New human episodes: `controls` (keys -> actions, pace, the recorder's settings), `capture` (the gymnasium
environment as dm_env under EnvLogger), `writer` (EnvLogger's backend: steps aligned and encoded), `store`
(the recordings' shard store), `window` (the pygame window), `session` (a process per browser participant)
and `gym_recorder` (`GymRecorder`: any gymnasium environment, recorded with features from its spaces).

Imports roundtrip and the floors below it; never `feedback` or `derive` (peers).
"""
