"""Helpers for testing policies with Hypothesis: :mod:`attestpolicy.testing.strategies`.

Needs the ``testing`` extra (``pip install 'attestpolicy[testing]'``, which installs
Hypothesis); ``import attestpolicy`` never imports this package.
"""
