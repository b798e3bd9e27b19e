"""Entry point of `python -m scaling.fit`; the work lives in `scaling.study.laws.fit`.

``python -m scaling.fit SWEEP.yaml|RUNS_DIR|TABLE``: power-law fits, figures and a report.
"""

import sys

from scaling.study.laws.fit import main

if __name__ == "__main__":
    sys.exit(main())
