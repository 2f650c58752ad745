"""Building blocks shared by the segmentation heads and backbones."""
