"""``python -m export`` = ``python -m export.onnx_selector``."""

import sys

from export.onnx_selector import main

sys.exit(main())
