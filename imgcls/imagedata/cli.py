"""`imgcls sample-data`: bundled data as class-folder PNGs."""
import argparse
import os

from imgcls.contract.errors import UserError


def register(subparsers) -> None:
  parser = subparsers.add_parser(
      'sample-data', help='write a bundled dataset as class-folder PNGs',
      description='Writes OUT/train/<class>/*.png and OUT/test/<class>/*.png.')
  parser.add_argument('--out', required=True)
  parser.add_argument('--source', choices=('digits', 'mnist'),
                      default='digits',
                      help="digits: scikit-learn's 1,797 8x8 digits, upscaled "
                      'to 28x28 (bundled, the default); mnist: the 70,000 '
                      'MNIST images from IDX files')
  parser.add_argument('--mnist-dir', help='folder of the MNIST IDX .gz files '
                      '(default: ../shared/data/mnist beside the repository)')
  parser.add_argument('--limit', type=int,
                      help='mnist only: write this many images in all, '
                      'keeping the train/test proportions')
  parser.set_defaults(handler=_sample_data)


def _sample_data(args: argparse.Namespace) -> int:
  from imgcls.imagedata import sample_data
  if os.path.isdir(args.out) and os.listdir(args.out):
    raise UserError(f'{args.out}: exists and is not empty; choose a new '
                    'folder (nothing was written)')
  if args.source == 'digits':
    samples, total = sample_data.digits_images(), None
  else:
    mnist_dir = args.mnist_dir or sample_data.default_mnist_dir()
    samples = sample_data.mnist_images(mnist_dir, args.limit)
    total = args.limit or 70_000
  count = sample_data.write_class_folders(samples, args.out, total)
  print(f'wrote {count} images to {args.out}/train and {args.out}/test')
  return 0
