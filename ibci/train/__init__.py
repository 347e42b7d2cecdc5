"""Training engines for stacks of models (the hand-written MLP engine, the CNN's) and the NSR penalty."""
