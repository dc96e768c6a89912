"""New human episodes: `controls` (keys -> actions, pace, the recorder's settings), `capture` (the gymnasium
environment as dm_env under EnvLogger), `writer` (EnvLogger's backend: steps aligned and encoded), `store`
(the recordings' shard store), `window` (the pygame window) and `session` (a process per browser participant).

Imports roundtrip and the floors below it; never `feedback` or `derive` (peers).
"""
