"""Entry point of `python -m scaling COMMAND ...` (the `var-scaling` console command).

`python -m scaling fit runs/demo` = `var-scaling fit runs/demo` = `python -m scaling.fit runs/demo`.
"""

import sys

from scaling.core.commands import main

if __name__ == "__main__":
    sys.exit(main())
