import os
import sys

# The mp_test_* modules import each other and microagent by plain name, as under MicroPython.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "firmware"))
