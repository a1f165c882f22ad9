"""Datasets, transforms, the train/validation split and the loaders frame builds from them."""
