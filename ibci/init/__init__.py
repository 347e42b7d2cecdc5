"""Initializations: base draws (Xavier, He, ...), LSUV, the neuron campaign (IBCI and its ablations) as the paper
and as the authors' code read it, the same for conv layers, and `init_` for a model of one's own."""
