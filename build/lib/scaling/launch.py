"""Entry point of `python -m scaling.launch`; the work lives in `scaling.study.run.launch`.

Launch a sweep: `python -m scaling.launch SWEEP.yaml [--dry-run] [--retry-failed] ...`.
"""

import sys

from scaling.study.run.launch import main

if __name__ == "__main__":
    sys.exit(main())
