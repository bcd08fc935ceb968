import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import sys

sys.path.insert(0, os.path.dirname(__file__))
