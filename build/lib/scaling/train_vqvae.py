"""Entry point of `python -m scaling.train_vqvae`; the work lives in `scaling.data.vqvae_training`.

Stage 1: train a multi-scale VQVAE on an image folder.
"""

import sys

from scaling.data.vqvae_training import main

if __name__ == "__main__":
    sys.exit(main())
