"""Files: HDF5 artifacts and their declared schemas, checkpoints, images and masks, safe names, atomic writes."""
