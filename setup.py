# The C runtime is built by cffi during install; everything else is in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["ggraph/backend/build_ffi.py:ffibuilder"])
