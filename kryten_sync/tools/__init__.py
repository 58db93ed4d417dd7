"""For people at a terminal: the command line, the demo and the embedded server."""
