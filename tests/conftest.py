import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The suite trains with float32 and never pays the device policy's calibration in train();
# tests/test_device.py tests the calibration path with ZOO_DEVICE_POLICY=auto (monkeypatched).
os.environ["ZOO_DEVICE_POLICY"] = "static"

import sys

sys.path.insert(0, os.path.dirname(__file__))
