"""Entry point of `python -m scaling.classifier`; the work lives in `scaling.data.classifier`.

A small image classifier for sample quality where no Inception weights exist (the demo).
"""

import sys

from scaling.data.classifier import main

if __name__ == "__main__":
    sys.exit(main())
