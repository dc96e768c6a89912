"""Human feedback we collect: `study` (which queries a participant sees), `annotations` (the store of their
answers, written by `dropj annotate`), `make_queries` (query sets from a world model's dreams) and
`query_video` (their videos).

Imports roundtrip and the floors below it; never `derive` or `recording` (peers).
"""
