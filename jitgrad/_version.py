"""jitgrad's version, in a module that imports nothing, for the code cache's key."""
__version__ = "0.1.0"
