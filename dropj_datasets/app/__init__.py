"""The application layer: the `dropj` command (`cli`), the demo, the wiring of `dropj train` to the models
and loaders (`train`), model I/O for the writers (`models_io`), evaluation, the views that `dropj show`,
`dropj stats` and the browser share (`views`), and the web apps (`web/`).

It parses, dispatches, serves and prints; anything a library user would need lives in the rooms below. It may
import every room; no room imports it.
"""
