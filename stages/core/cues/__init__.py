"""Cues for the seeds: saliency (the background cue), fusing CAMs and saliency into seeds, the dense CRF."""
