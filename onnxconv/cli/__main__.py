"""``python -m onnxconv.cli``, as ``onnxconv``."""

import sys

from . import main

sys.exit(main())
