"""Everything that writes, in sub-packages by job. Each may import only the floors below it (and the
define room, `dropj_datasets`); `tests/test_architecture.py` checks this against the table of
`docs/architecture.md`:

    5  feedback/   derive/   recording/   the datasets our tools write (peers: none imports another)
    4  roundtrip/                         built datasets read back, exported, verified
    3  release/                           the release's files -> examples: sources, alignment, one converter per kind
    2  build/                             the build's engine: reader and encoder processes, Beam
    1  store/                             bytes on disk: safe opens and the pickle VM in, durable writes out,
                                          dataset-directory checks, the shard store of written datasets
"""


def __getattr__(name: str):
    """`from dropj.converters import GymRecorder`: the recorder of any gymnasium environment, loaded on first use
    (so `import dropj.converters` alone loads no recorder)."""
    if name == "GymRecorder":
        from dropj.converters.recording.gym_recorder import GymRecorder

        return GymRecorder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
