"""Measuring and showing results: the confusion-matrix metrics and the pictures of `show`."""
