"""`python -m tfvae.bench --child SECTION OPTIONS OUT [VARIANT]`: how `tfvae bench` runs a section in its own process.

OPTIONS is the section's options as JSON; OUT receives its result as JSON, or {"error": ...} for a known failure.
"""

import sys

from tfvae.bench.runner import child


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] != ["--child"] or len(argv) not in (4, 5):
        print("python -m tfvae.bench runs one section for `tfvae bench`; to measure, run `tfvae bench` "
              "(see tfvae bench --help)", file=sys.stderr)
        return 2
    return child(*argv[1:])


if __name__ == "__main__":
    sys.exit(main())
