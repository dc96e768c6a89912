"""The build's engine, blind to kinds: `pipeline` (a reader process, encoder processes, frames in shared memory)
and `beam` (the same as an Apache Beam transform). A converter hands them its reading and encoding functions.

Imports the store floor and the define room.
"""
