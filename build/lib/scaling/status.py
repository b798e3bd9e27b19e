"""Entry point of `python -m scaling.status`; the work lives in `scaling.study.run.status`.

Where every run of a sweep stands: `python -m scaling.status SWEEP.yaml [--watch] [--json]`.
"""

import sys

from scaling.study.run.status import main

if __name__ == "__main__":
    sys.exit(main())
