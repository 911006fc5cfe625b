"""Runnable explanations: from word vectors and RNNs to the Transformer (see README)."""
