"""Benchmarks of the pipeline, each against its floor or peer.

    scripts/in-env python -m bench          # full size -> bench/results.json,
                                            #   rendered as docs/benchmarks.md
    scripts/in-env python -m bench --quick  # tiny: do the scripts still work?
    scripts/in-env python -m bench --only serving

  ingest    ImageExampleGen against a plain loop writing the same TFRecords
  input     Trainer steps/s on the TFRecords against in-memory tensors
  pipeline  `imgcls run` against a plain load-fit-save script
  serving   REST and gRPC latency against the signature called in-process
  accuracy  LeNet's MNIST test accuracy and training time with `imgcls train`

Full size needs MNIST's IDX files (../shared/data/mnist, or --mnist-dir) and
takes about an hour on 2 cores; quick mode uses the bundled digits.

This package imports nothing: bench.plain_train, a floor, runs as its own
process and must not pay for the benchmarks' imports.
"""
