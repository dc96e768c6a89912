"""Building episode configs on Apache Beam (`tfds build ... --beam_pipeline_options=...`).

One release file is one pickle stream: it can only be read from its start.
The Beam unit of work is therefore the file: one worker runs the default
build's pipeline on it (`pipeline.Pipeline`: a reader process and an encoder
process per core, frames in shared memory) and emits the encoded examples;
TFDS's Beam writer then encodes, serialises, sorts by key and shards them on
every worker, as in the default build: the same records, byte for byte
(tests/converters/build/test_beam.py).

    Create([file]) -> Examples: the file's (key, example) pairs, PNG frames
                   -> TFDS: encode, serialise, shuffle to shards, write

The pipeline runs in a spawned interpreter (`pipeline.in_fresh_process`): a
Beam worker talks to its runner over gRPC from several threads, and a
reader process forked from the worker itself aborted now and then (SIGABRT,
after gRPC's "skipping fork() handlers") in tests/converters/build/test_beam.py.

Measured once while designing it, and rejected: a sequential reader handing raw
episodes to every worker through a `Reshuffle`. The raw frames then cross the
shuffle (21 MB per Car Racing episode, 49 MB per Obstacle one), and Beam's
DirectRunner holds a stage's whole output in memory: 7.3 GB of memory and 7x
the default build's time on a 2.1 GB source. With the file as the unit,
what crosses is the encoded examples (about 1.5 MB per episode), and a
worker with many cores reads as fast as the default build's reader allows.

Needs `pip install 'dropj-rlds[beam]'` (apache-beam); imported only when a
Beam build asks for it.
"""

from typing import Any, Callable, Iterator

import apache_beam as beam

from dropj.converters.build import pipeline

NAMESPACE = "dropj"


def _examples(_source: str, examples: Callable[[], Iterator[tuple[int, dict]]], name: str
              ) -> Iterator[tuple[int, dict]]:
    episodes = beam.metrics.Metrics.counter(NAMESPACE, "episodes")
    for item in pipeline.in_fresh_process(examples, name):
        episodes.inc()
        yield item


class Episodes(beam.PTransform):
    """The (key, example) pairs of one episode config: `examples()` (picklable, run in a fresh process on a
    worker) yields them, `source` names what they are read from, `name` the config (for messages)."""

    def __init__(self, examples: Callable[[], Iterator[tuple[int, dict]]], source: str, name: str):
        super().__init__()
        self._examples, self._source, self._name = examples, source, name

    def expand(self, pipeline: Any) -> Any:
        return (pipeline
                | "Source" >> beam.Create([self._source])
                | "Examples" >> beam.FlatMap(_examples, self._examples, self._name))
