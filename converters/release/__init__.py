"""The release's files -> examples, and back: `sources` (find and open release files), `episodes` (step
alignment: release transitions <-> RLDS steps), `kinds` (the `Converter` each kind registers), and one converter
per kind: `rollouts` (episodes, recordings), `preferences` (queries, preferences), `sketches`.

Imports the build and store floors and the define room.
"""
