"""The data plane: the three atomic steps of a request, one module per backend (see :mod:`.base`)."""
