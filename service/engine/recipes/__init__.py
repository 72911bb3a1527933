"""Model recipes: a list of layers (the compact syntax or objects) expanded to the tensors of a state dict."""
