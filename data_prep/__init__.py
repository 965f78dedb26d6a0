"""Converters from raw video datasets to TFDS TFRecord shards of frame triplets."""
