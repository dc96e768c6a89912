"""Map-style loading without TensorFlow: `WindowDataset` over `EpisodeSource` at 0, 1 and 2 workers.

A first measurement for issue 14 (its full benchmark, with the decode ceiling, growth and memory over a
long run, is still to come). Give it a built `dropj_carracing/real` version folder, e.g. the one the build
benchmark leaves behind:

    .venv/bin/python tests/benchmarks/bench_map_loader.py \\
        /tmp/dropj-bench/carracing/data_ours/dropj_carracing/real/1.1.0 [--length 20] [--batches 40]
"""

from __future__ import annotations

import argparse
import time

from torch.utils.data import DataLoader

from dropj.loaders import EpisodeSource, WindowDataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("dataset_dir")
    parser.add_argument("--length", type=int, default=20)
    parser.add_argument("--batches", type=int, default=40, help="timed batches after the first")
    parser.add_argument("--batch_size", type=int, default=32)
    args = parser.parse_args()
    start = time.perf_counter()
    windows = WindowDataset(EpisodeSource(args.dataset_dir), args.length)
    print(f"{len(windows)} windows of {args.length} steps, indexed in {time.perf_counter() - start:.2f} s")
    for workers in (0, 1, 2):
        loader = DataLoader(windows, batch_size=args.batch_size, shuffle=True, num_workers=workers,
                            persistent_workers=workers > 0, multiprocessing_context="spawn" if workers else None)
        start = time.perf_counter()
        batches = iter(loader)
        next(batches)
        first = time.perf_counter() - start
        start, steps = time.perf_counter(), 0
        for index, batch in enumerate(batches):
            steps += batch["observation"].shape[0] * args.length
            if index + 1 == args.batches:
                break
        print(f"{workers} workers: first batch after {first:.2f} s, "
              f"{steps / (time.perf_counter() - start):,.0f} steps/s")
        del batches, loader  # stop the workers now, not at interpreter exit


if __name__ == "__main__":
    main()
