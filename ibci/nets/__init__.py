"""The networks the suite trains, held as stacks of S independent models: the paper's MLPs and a LeNet-style CNN."""
