"""The data plane: the atomic steps of a request, one module per backend (see :mod:`.base`)."""
