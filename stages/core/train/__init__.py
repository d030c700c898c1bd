"""Training: the one loop (loop.py), its set-up for any network (fit.py: a Task), what the classifier and the segmenter add, batches and losses."""
