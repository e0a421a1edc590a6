"""The command line: the dispatcher and one module per verb."""
