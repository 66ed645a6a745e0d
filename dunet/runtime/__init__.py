"""The inference side: runs a model file without PyTorch."""
