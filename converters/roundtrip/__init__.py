"""Built datasets read back (`built`), exported to the release's pickles (`export`), and compared with the
release files they came from (`verify`).

Imports release, build, store and the define room.
"""
