"""`python -m bench [--quick] [--only NAME] [--results PATH] [--out PATH]`,
see the package."""
import argparse
import logging
import os
import sys
import tempfile
import traceback
from typing import Tuple

from bench import (
  accuracy,
  bucket_ingest,
  common,
  doc,
  ingest,
  input_pipeline,
  serve_latency,
  whole_pipeline,
)
from imgcls.imagedata import sample_data

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# In the order of the page.
BENCHMARKS = {
    module.NAME: module for module in (ingest, bucket_ingest, input_pipeline,
                                       whole_pipeline, serve_latency,
                                       accuracy)
}


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='python -m bench',
      description='Benchmarks of the pipeline against their floors; full '
      f'size writes {os.path.relpath(doc.RESULTS, _REPO)} and renders '
      f'{os.path.relpath(doc.PAGE, _REPO)} from it.')
  parser.add_argument('--quick', action='store_true',
                      help='tiny data (bundled digits) and 1-2 epochs, to '
                      'check that the scripts work; writes to --results and '
                      '--out or a temporary folder, never to the docs')
  parser.add_argument('--only', action='append', choices=list(BENCHMARKS),
                      metavar='NAME',
                      help='run this benchmark only (repeatable); the '
                      'others keep their recorded figures. One of: ' +
                      ', '.join(BENCHMARKS))
  parser.add_argument('--rounds', type=int,
                      help='rounds of the pipeline benchmark (default: 3); '
                      'the best counts')
  parser.add_argument('--results', help='the data file of the results '
                      '(default: bench/results.json, or a temporary folder\'s '
                      'with --quick)')
  parser.add_argument('--out', help='the Markdown page rendered from them '
                      '(default: docs/benchmarks.md, or a temporary folder\'s '
                      'with --quick)')
  parser.add_argument('--work-dir',
                      help='data and outputs (default: _work/bench, or '
                      '_work/bench-quick with --quick)')
  parser.add_argument('--mnist-dir', default=sample_data.default_mnist_dir(),
                      help='the MNIST IDX .gz files (default: %(default)s)')
  return parser


def _outputs(args: argparse.Namespace) -> Tuple[str, str]:
  """(the data file, the page): quick figures never reach the docs."""
  if not args.quick:
    return args.results or doc.RESULTS, args.out or doc.PAGE
  temporary = tempfile.mkdtemp(prefix='imgcls-bench-')
  return (args.results or os.path.join(temporary, 'results.json'),
          args.out or os.path.join(temporary, 'benchmarks.md'))


def main(argv=None) -> int:
  args = _parser().parse_args(argv)
  for noisy in ('absl', 'tensorflow'):
    logging.getLogger(noisy).setLevel(logging.ERROR)
  results_path, out = _outputs(args)
  session = common.Session(
      quick=args.quick,
      work_dir=os.path.abspath(args.work_dir or os.path.join(
          _REPO, '_work', 'bench-quick' if args.quick else 'bench')),
      mnist_dir=args.mnist_dir, rounds=args.rounds)
  results = {
      name: result for name, result in doc.load_results(results_path).items()
      if result.quick == args.quick and name in BENCHMARKS
  }
  failed = []
  for name in args.only or BENCHMARKS:
    print(f'bench: {name} ...', flush=True)
    load = common.load_average()
    try:
      results[name] = BENCHMARKS[name].run(session)
    except Exception:  # report, go on
      traceback.print_exc()
      failed.append(name)
      continue
    results[name].machine = common.machine(load)
    for figure in results[name].figures:
      print(f'  {figure.name}: {common.fmt(figure.value)} {figure.unit}' +
            (f' ({figure.peer_name} {common.fmt(figure.peer_value)})'
             if figure.peer_value is not None else '') +
            {True: ' target met', False: ' target NOT met', None: ''}[
                figure.met], flush=True)
    # Written after each benchmark: a later failure keeps what was measured.
    doc.write([results[n] for n in BENCHMARKS if n in results], results_path,
              out)
  print(f'bench: wrote {results_path} and {out}')
  if failed:
    print(f'bench: failed: {", ".join(failed)}', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())
