"""Entry point of `python -m scaling.sample_eval`; the work lives in `scaling.training.sample_eval`.

``python -m scaling.sample_eval RUN_DIR``: sample quality of a trained run.
"""

import sys

from scaling.training.sample_eval import main

if __name__ == "__main__":
    sys.exit(main())
