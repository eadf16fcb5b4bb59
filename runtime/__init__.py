"""The PyTorch back end: an interpreter over a lowered sslspec Plan."""
