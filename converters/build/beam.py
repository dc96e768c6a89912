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

import functools
from typing import Any, Iterator

import apache_beam as beam

from dropj.converters.build import pipeline
from dropj.converters.release import rollouts

NAMESPACE = "dropj"


def _examples(_source: str, make: rollouts.ExampleMaker) -> Iterator[tuple[int, dict]]:
    episodes = beam.metrics.Metrics.counter(NAMESPACE, "episodes")
    for item in pipeline.in_fresh_process(functools.partial(rollouts.iter_examples, make), make.spec.config):
        episodes.inc()
        yield item


class Episodes(beam.PTransform):
    """The (key, example) pairs of one episode config."""

    def __init__(self, make: rollouts.ExampleMaker):
        super().__init__()
        self._make = make

    def expand(self, pipeline: Any) -> Any:
        return (pipeline
                | "Source" >> beam.Create([str(self._make.main)])
                | "Examples" >> beam.FlatMap(_examples, self._make))
