"""The model room: load a CLIP from a spec, preprocess images, encode, train and evaluate."""
