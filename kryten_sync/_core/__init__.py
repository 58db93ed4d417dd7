"""The private core: the loop thread, the connection, publishing, hand-offs and
dispatch. No user code runs here and nothing here imports the client."""
