"""Networks at test time: the classifier's multi-scale CAMs, the segmenter's multi-scale (+ flip) probabilities."""
