"""Reading a user's image folders: class folders, spans, checks, tf.Examples.

The layer right above the contract: the ExampleGen, the standalone Trainer and
the serving checks all read images through it.
"""
