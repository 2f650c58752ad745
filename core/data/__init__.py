"""The input pipeline: TFRecord reading and decoding, preprocessing steps, record field names."""
