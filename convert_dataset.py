"""Convert sequence files (``user item item ...`` per line) to RecBole atomic files.

    python convert_dataset.py --input Beauty.txt --name beauty --output dataset/ \
        [--attributes Beauty_item2attributes.json] [--force]

then ``python run_llmd4rec.py --dataset=beauty --data_path=dataset/``. The conversion itself is
``recbole_llmd4rec.data.convert`` (docs/data.md). Bad input ends in one ``error:`` line, exit 2.
"""

import argparse
import sys

from recbole_llmd4rec.data.convert import convert
from recbole_llmd4rec.errors import LLMD4RecError, report_bad_input


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python convert_dataset.py",
        description="Convert `user item item ...` sequence files to RecBole atomic files.",
    )
    parser.add_argument("--input", required=True, help="sequence file, one user per line")
    parser.add_argument("--name", required=True, help="data set name, e.g. beauty")
    parser.add_argument("--output", required=True, help="folder that will hold NAME/NAME.inter")
    parser.add_argument("--attributes", default=None, help="optional json {item: [attribute, ...]}")
    parser.add_argument("--force", action="store_true", help="overwrite existing atomic files")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        summary = convert(args.input, args.name, args.output, args.attributes, args.force)
    except LLMD4RecError as exc:
        return report_bad_input(exc)
    print(f"{args.name}: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
